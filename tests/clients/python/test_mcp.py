"""The official MCP Python SDK (`mcp`) against Kenning's `/mcp`, as an agent client connects.

Needs KENNING_URL, KENNING_KEY and KENNING_SPACE, set by scripts/clients.sh, which seeds the
space with vacation.md and meals.md.
"""

import asyncio
import os
import unittest

from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

URL = os.environ["KENNING_URL"]
KEY = os.environ["KENNING_KEY"]
SPACE = os.environ["KENNING_SPACE"]


async def with_session(key, work):
    """Runs `work(session)` on an initialized MCP session signed in with `key`."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(f"{URL}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)


def run(work, key=KEY):
    return asyncio.run(with_session(key, work))


class Mcp(unittest.TestCase):
    def test_the_tools_are_listed(self):
        async def work(session):
            return sorted(t.name for t in (await session.list_tools()).tools)

        self.assertEqual(run(work), ["ask", "list_spaces", "recall", "remember", "search"])

    def test_an_agent_lists_searches_and_asks(self):
        async def work(session):
            spaces = await session.call_tool("list_spaces", {})
            found = await session.call_tool("search", {"space": SPACE, "query": "paid vacation"})
            answer = await session.call_tool(
                "ask", {"space": SPACE, "question": "How many days of paid vacation does an employee get?"}
            )
            return spaces, found, answer

        spaces, found, answer = run(work)
        self.assertFalse(spaces.is_error)
        self.assertIn(SPACE, [s["name"] for s in spaces.structured_content["spaces"]])
        self.assertEqual(found.structured_content["passages"][0]["document"], "vacation.md")
        self.assertFalse(answer.is_error)
        text = answer.content[0].text
        self.assertIn("twenty-five days", text)
        self.assertIn("[1] vacation.md", text)

    def test_a_memory_is_recalled_by_meaning(self):
        async def work(session):
            await session.call_tool("remember", {"text": "The team's standup is at 9:30 on weekdays."})
            return await session.call_tool("recall", {"query": "when is the daily meeting"})

        recalled = run(work)
        self.assertEqual(
            recalled.structured_content["memories"][0]["text"], "The team's standup is at 9:30 on weekdays."
        )

    def test_an_unknown_space_is_an_error_the_model_can_read(self):
        async def work(session):
            return await session.call_tool("ask", {"space": "no such space", "question": "hi?"})

        result = run(work)
        self.assertTrue(result.is_error)
        self.assertEqual(result.structured_content["error"]["code"], "space_not_found")

    def test_without_a_key_the_connection_is_refused(self):
        # The server answers 401 (asserted by the Rust API tests); the SDK reports it as an
        # MCPError from the handshake.
        with self.assertRaises(BaseException) as caught:
            run(lambda session: session.list_tools(), key=None)
        errors, pending = [], [caught.exception]
        while pending:
            e = pending.pop()
            errors.append(e)
            pending.extend(getattr(e, "exceptions", []))
        self.assertTrue(any(isinstance(e, MCPError) for e in errors), repr(caught.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
