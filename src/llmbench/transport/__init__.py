"""The wire layer of OpenAI-compatible and TGI servers, shared by the ``openai`` backend and the load client.

* request bodies (:func:`openai_body`, :func:`tgi_body`, :class:`Sampling`), text or token-id prompts;
* text prompts of an exact server-counted length (:func:`calibrate_prompt`);
* server-sent events and the streams of each API, parsed after the response (:func:`parse_openai_stream`);
* credentials: from the environment (:func:`api_key_from`) or a URL (:func:`split_credentials`),
  sent as their header, taken out of any text shown (:func:`redact`);
* the retry rule (:func:`may_resend`): a request the server may have seen is not sent again unless
  the user allows it, and every attempt is counted;
* whether a server closes its connections after each response without saying so
  (:func:`closes_after_response`): the clients then open one per request;
* a synchronous client of one server (:class:`SyncClient`, httpx) on all of the above.

Heavy clients (httpx, aiohttp) are imported where they are used, never by importing this package.
"""

from llmbench.transport._bodies import (
    PROMPT_FORMATS,
    Endpoint,
    PromptFormat,
    Sampling,
    count_body,
    encode,
    openai_body,
    prompt_format,
    tgi_body,
    usage_prompt_tokens,
)
from llmbench.transport._calibrate import CalibratedPrompt, PromptTokenizer, calibrate_prompt, special_prefix
from llmbench.transport._credentials import (
    KEY_PARAMETERS,
    Credential,
    api_key_from,
    as_credential,
    redact,
    split_credentials,
)
from llmbench.transport._http import SyncClient, api_root, endpoint_path, join_url
from llmbench.transport._probe import closes_after_response
from llmbench.transport._retry import STALE, STALE_RESENDS, check_retries, may_resend
from llmbench.transport._sse import MalformedStream, SSEBuffer, StreamEvent, split_events
from llmbench.transport._streams import (
    PARSERS,
    Counted,
    ParsedStream,
    count_stream,
    merge_reads,
    parse_openai_stream,
    parse_tgi_stream,
    reconcile_counts,
)

__all__ = [
    "KEY_PARAMETERS",
    "PARSERS",
    "PROMPT_FORMATS",
    "STALE",
    "STALE_RESENDS",
    "CalibratedPrompt",
    "Counted",
    "Credential",
    "Endpoint",
    "MalformedStream",
    "ParsedStream",
    "PromptFormat",
    "PromptTokenizer",
    "SSEBuffer",
    "Sampling",
    "StreamEvent",
    "SyncClient",
    "api_key_from",
    "api_root",
    "as_credential",
    "calibrate_prompt",
    "check_retries",
    "closes_after_response",
    "count_body",
    "count_stream",
    "encode",
    "endpoint_path",
    "join_url",
    "may_resend",
    "merge_reads",
    "openai_body",
    "parse_openai_stream",
    "parse_tgi_stream",
    "prompt_format",
    "reconcile_counts",
    "redact",
    "special_prefix",
    "split_credentials",
    "split_events",
    "tgi_body",
    "usage_prompt_tokens",
]
