"""Small aiohttp helpers shared by the console API and the stand-in dispatch endpoint."""

from __future__ import annotations

from aiohttp import web


async def answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response`` now and close the connection at once.

    For a request whose body never fully arrived: aiohttp would otherwise keep the connection for its
    lingering time (10 s), reading whatever body still comes, before it closes it.
    """
    response.force_close()  # "Connection: close"
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response
