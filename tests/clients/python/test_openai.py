"""The official `openai` Python SDK against a running Kenning, as a user of it would call it.

Needs KENNING_URL, KENNING_KEY (an API key of a member of the space) and KENNING_SPACE (the
space's name), set by scripts/clients.sh, which seeds the space with vacation.md and meals.md.
"""

import base64
import math
import os
import struct
import unittest

import openai

URL = os.environ["KENNING_URL"]
KEY = os.environ["KENNING_KEY"]
SPACE = os.environ["KENNING_SPACE"]

VACATION_QUESTION = "How many days of paid vacation does every employee receive each year?"


def client(key=KEY):
    return openai.OpenAI(base_url=f"{URL}/v1", api_key=key, max_retries=0, timeout=120)


def sources(completion):
    """Kenning's `sources` extension, as the SDK keeps unknown fields."""
    return (completion.model_extra or {}).get("sources") or []


class Models(unittest.TestCase):
    def test_spaces_are_listed_and_retrieved_as_models(self):
        ids = [m.id for m in client().models.list()]
        self.assertIn(SPACE, ids)
        self.assertEqual(client().models.retrieve(SPACE).id, SPACE)

    def test_an_unknown_model_is_a_not_found_error(self):
        with self.assertRaises(openai.NotFoundError) as caught:
            client().models.retrieve("no such space")
        self.assertEqual(caught.exception.body.get("type"), "not_found_error")


class Chat(unittest.TestCase):
    def test_a_whole_answer_cites_the_passage_that_holds_it(self):
        c = client().chat.completions.create(
            model=SPACE, messages=[{"role": "user", "content": VACATION_QUESTION}]
        )
        self.assertEqual(c.object, "chat.completion")
        choice = c.choices[0]
        self.assertEqual(choice.finish_reason, "stop")
        self.assertIn("twenty-five days", choice.message.content)
        self.assertEqual(sources(c)[0]["filename"], "vacation.md")
        self.assertGreater(c.usage.completion_tokens, 0)
        self.assertEqual(c.usage.total_tokens, c.usage.prompt_tokens + c.usage.completion_tokens)

    def test_a_streamed_answer_arrives_in_chunks_and_ends_with_its_usage(self):
        stream = client().chat.completions.create(
            model=SPACE,
            messages=[{"role": "user", "content": VACATION_QUESTION}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertIn("twenty-five days", text)
        self.assertGreater(len([c for c in chunks if c.choices]), 2, "streamed piece by piece")
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finishes, ["stop"])
        self.assertEqual(chunks[-1].choices, [])
        self.assertGreater(chunks[-1].usage.completion_tokens, 0)

    def test_a_follow_up_is_answered_from_the_passage_the_earlier_turns_point_at(self):
        follow_up = "Do unused ones expire?"
        alone = client().chat.completions.create(
            model=SPACE, messages=[{"role": "user", "content": follow_up}]
        )
        self.assertEqual(sources(alone)[0]["filename"], "meals.md", "without history: meal vouchers")
        c = client().chat.completions.create(
            model=SPACE,
            messages=[
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": VACATION_QUESTION},
                {"role": "assistant", "content": "Twenty-five days [1]."},
                {"role": "user", "content": follow_up},
            ],
        )
        self.assertEqual(sources(c)[0]["filename"], "vacation.md")
        self.assertIn("carry over", c.choices[0].message.content)

    def test_a_token_cap_ends_the_answer_with_finish_reason_length(self):
        c = client().chat.completions.create(
            model=SPACE,
            messages=[{"role": "user", "content": VACATION_QUESTION}],
            max_completion_tokens=2,
        )
        self.assertEqual(c.choices[0].finish_reason, "length")
        self.assertEqual(c.usage.completion_tokens, 2)

    def test_bad_requests_raise_the_sdks_typed_errors(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().chat.completions.create(model=SPACE, messages=[])
        self.assertEqual(caught.exception.body.get("type"), "invalid_request_error")
        with self.assertRaises(openai.NotFoundError):
            client().chat.completions.create(
                model="no such space", messages=[{"role": "user", "content": "hi"}]
            )
        with self.assertRaises(openai.AuthenticationError):
            client("kn_not_a_real_key").chat.completions.create(
                model=SPACE, messages=[{"role": "user", "content": "hi"}]
            )


class Embeddings(unittest.TestCase):
    def test_float_and_base64_are_the_same_vectors(self):
        texts = ["paid vacation", "meal vouchers"]
        floats = client().embeddings.create(model="any", input=texts, encoding_format="float")
        raw = client().embeddings.create(model="any", input=texts, encoding_format="base64")
        # The SDK's default asks for base64 and decodes it itself.
        default = client().embeddings.create(model="any", input=texts)
        self.assertEqual(len(floats.data), 2)
        for f, r, d in zip(floats.data, raw.data, default.data):
            self.assertEqual(len(f.embedding), 384)
            decoded = struct.unpack(f"<{len(f.embedding)}f", base64.b64decode(r.embedding))
            self.assertTrue(all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(f.embedding, decoded)))
            self.assertEqual(len(d.embedding), 384, "not a quarter of the length")
            self.assertTrue(all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(f.embedding, d.embedding)))
        self.assertGreater(floats.usage.prompt_tokens, 0)

    def test_a_length_the_model_cannot_give_is_refused(self):
        with self.assertRaises(openai.BadRequestError):
            client().embeddings.create(model="any", input="x", dimensions=64)


if __name__ == "__main__":
    unittest.main(verbosity=2)
