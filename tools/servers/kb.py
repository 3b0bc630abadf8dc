"""Acme's knowledge base: a small upstream MCP server (stdio) that Portcullis proxies as `kb`.

Run by the gateway as a subprocess (see `upstreams:` in portcullis.yaml); it
never sees who the caller is. Read-only: search, read an article, and one
resource per article.
"""

from __future__ import annotations

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resources import TextResource
from mcp.types import ToolAnnotations
from pydantic import BaseModel

ARTICLES = {
    "refund-policy": (
        "Refund policy",
        "Refunds up to 100 EUR are issued by finance; larger refunds need a manager's approval. "
        "Refunds go back to the customer's account balance within two working days.",
    ),
    "password-reset": (
        "Resetting a customer's password",
        "Never ask a customer for their password. Send the reset link from the CRM; it expires after 30 minutes.",
    ),
    "escalation": (
        "Escalating a ticket",
        "Urgent tickets are escalated to the on-call manager."
        " Set the priority to 'urgent' and mention the customer id.",
    ),
    "shipping-delays": (
        "Shipping delays",
        "Check the inventory status before promising a delivery date; items with zero stock ship in 10 to 14 days.",
    ),
}

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
server = MCPServer("acme-kb", instructions="Acme's support knowledge base.")


class Hit(BaseModel):
    id: str
    title: str


class SearchResult(BaseModel):
    hits: list[Hit]


class Article(BaseModel):
    id: str
    title: str
    body: str


@server.tool(annotations=READ_ONLY)
def search(query: str) -> SearchResult:
    """Search knowledge-base articles by words in their title or body."""
    words = query.lower().split()
    hits = [
        Hit(id=key, title=title)
        for key, (title, body) in ARTICLES.items()
        if all(word in f"{title} {body}".lower() for word in words)
    ]
    return SearchResult(hits=hits)


@server.tool(annotations=READ_ONLY)
def get_article(article_id: str) -> Article:
    """Read one knowledge-base article by id (as returned by search)."""
    if article_id not in ARTICLES:
        raise ToolError(f"no article {article_id!r}")
    title, body = ARTICLES[article_id]
    return Article(id=article_id, title=title, body=body)


for key, (title, body) in ARTICLES.items():
    server.add_resource(
        TextResource(
            uri=f"kb://articles/{key}", name=key, title=title, mime_type="text/markdown", text=f"# {title}\n\n{body}\n"
        )
    )


@server.prompt()
def answer_from_kb(question: str) -> str:
    """Answer a customer's question from the knowledge base."""
    return f"Search the knowledge base for: {question}. Quote the article you rely on."


if __name__ == "__main__":
    server.run()
