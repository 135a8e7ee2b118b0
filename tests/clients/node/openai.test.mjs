// The official `openai` npm package against a running Kenning, as Node clients (LangChain.js,
// n8n and others built on it) call it. Needs KENNING_URL, KENNING_KEY and KENNING_SPACE, set by
// scripts/clients.sh, which seeds the space with vacation.md and meals.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const { KENNING_URL, KENNING_KEY, KENNING_SPACE: SPACE } = process.env;
const client = (apiKey = KENNING_KEY) =>
  new OpenAI({ baseURL: `${KENNING_URL}/v1`, apiKey, maxRetries: 0, timeout: 120_000 });
const QUESTION = 'How many days of paid vacation does every employee receive each year?';

test('spaces are models', async () => {
  const ids = [];
  for await (const m of client().models.list()) ids.push(m.id);
  assert.ok(ids.includes(SPACE), ids.join(', '));
  assert.equal((await client().models.retrieve(SPACE)).id, SPACE);
});

test('a whole answer cites the passage that holds it', async () => {
  const c = await client().chat.completions.create({
    model: SPACE,
    messages: [{ role: 'user', content: QUESTION }],
  });
  assert.equal(c.choices[0].finish_reason, 'stop');
  assert.match(c.choices[0].message.content, /twenty-five days/);
  assert.equal(c.sources[0].filename, 'vacation.md');
  assert.equal(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens);
});

test('a streamed answer arrives in chunks and ends with its usage', async () => {
  const stream = await client().chat.completions.create({
    model: SPACE,
    messages: [{ role: 'user', content: QUESTION }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.match(text, /twenty-five days/);
  const finishes = chunks.map((c) => c.choices[0]?.finish_reason).filter(Boolean);
  assert.deepEqual(finishes, ['stop']);
  assert.deepEqual(chunks.at(-1).choices, []);
  assert.ok(chunks.at(-1).usage.completion_tokens > 0);
});

test('a follow-up is answered from the passage the earlier turns point at', async () => {
  const c = await client().chat.completions.create({
    model: SPACE,
    messages: [
      { role: 'developer', content: 'Answer briefly.' },
      { role: 'user', content: QUESTION },
      { role: 'assistant', content: 'Twenty-five days [1].' },
      { role: 'user', content: 'Do unused ones expire?' },
    ],
  });
  assert.equal(c.sources[0].filename, 'vacation.md');
  assert.match(c.choices[0].message.content, /carry over/);
});

test('embeddings come back whole by default (base64) and as floats', async () => {
  const input = ['paid vacation', 'meal vouchers'];
  // The SDK asks for base64 unless told otherwise, and decodes it itself.
  const byDefault = await client().embeddings.create({ model: 'any', input });
  const floats = await client().embeddings.create({ model: 'any', input, encoding_format: 'float' });
  assert.equal(byDefault.data.length, 2);
  for (let i = 0; i < 2; i++) {
    assert.equal(floats.data[i].embedding.length, 384);
    assert.equal(byDefault.data[i].embedding.length, 384, 'not a quarter of the length');
    floats.data[i].embedding.forEach((x, j) =>
      assert.ok(Math.abs(x - byDefault.data[i].embedding[j]) <= 1e-6 * Math.max(1, Math.abs(x))),
    );
  }
});

test('errors are the SDK\'s typed errors', async () => {
  await assert.rejects(
    client().chat.completions.create({ model: SPACE, messages: [] }),
    (e) => e instanceof OpenAI.BadRequestError && e.type === 'invalid_request_error',
  );
  await assert.rejects(
    client().chat.completions.create({ model: 'no such space', messages: [{ role: 'user', content: 'hi' }] }),
    OpenAI.NotFoundError,
  );
  await assert.rejects(client('kn_not_a_real_key').models.list(), OpenAI.AuthenticationError);
});
