"""Watching gRPC calls from a server interceptor: when each one ends, and with which status.

An interceptor is handed the method handler, not the call, so the handler's behaviour is
wrapped. A call has ended once both
- its handler is done: the behaviour returned (unary responses), or its response iterator
  was exhausted, raised, or was dropped unfinished (streams: an Add lasts as long as its
  stream), and
- grpc has finished the call: its status was sent, or the client cancelled (grpc runs the
  callbacks given to context.add_callback then).
Waiting for both means a shutdown that waits for calls to end never cuts off a status still
being sent, nor closes the WAL under a handler that is still running after a cancel.

The status, read as the handler is done, before grpc sends it:
- the call is no longer active: nothing has been sent yet, so the client ended it (it
  cancelled, or its deadline passed) → CANCELLED or DEADLINE_EXCEEDED;
- context.abort() raised (service.py maps every domain error this way) → the code it set;
- any other exception → UNKNOWN, as grpc answers it;
- otherwise the code set with context.set_code(), or OK;
and CANCELLED / DEADLINE_EXCEEDED after all if grpc then reports the call cancelled (see
_cancelled_by_client).

Calls grpc refuses before any handler runs (over --max-concurrent-rpcs) are not seen here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    # time.perf_counter() as the handler was done: a call's duration is the server's work on
    # it, not how soon grpc's polling thread gets to the end of the exchange.
    handler_done_at: float
    # For client-streaming calls watched with a `count`: the sum of count(request) over the
    # requests read (Add: its items and packed rows); otherwise None.
    items: int | None


OnEnd = Callable[[Outcome], None]
# Called as the call starts; may refuse it by calling context.abort(). Returns what to call
# once it has ended, exactly once.
OnStart = Callable[[grpc.ServicerContext], OnEnd]
Behavior = Callable[[Any, grpc.ServicerContext], Any]


def _ended_by_client(context: grpc.ServicerContext) -> grpc.StatusCode:
    # time_remaining() is huge without a deadline and 0 once it has passed.
    passed = context.time_remaining() <= 0
    return grpc.StatusCode.DEADLINE_EXCEEDED if passed else grpc.StatusCode.CANCELLED


def handler_code(context: grpc.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status of a call whose handler is done (see the module docstring)."""
    if not context.is_active():
        return _ended_by_client(context)
    # code() is None unless abort() or set_code() set one, whatever its annotation says.
    code: grpc.StatusCode | None = context.code()
    if code is not None:
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


def _cancelled_by_client(context: grpc.ServicerContext) -> bool:
    """Whether grpc finished the call as cancelled rather than by sending its status.

    A client-streaming handler cannot always tell: grpc may hand its request iterator the
    end of the stream before it marks the call cancelled, and the handler then ends as if
    all went well. No public API tells the two apart once the call is over, so this reads
    grpc's own call state (grpc/_server.py: _RPCState.client), and says False where that is
    not to be found.
    """
    state = getattr(context, "_state", None)
    return getattr(state, "client", None) == "cancelled"


_RUNNING = object()  # the handler's code, until it is done


class _Ending:
    """Reports a call's end once, when both its handler and grpc are done with it."""

    def __init__(self, context: grpc.ServicerContext, on_end: OnEnd, counted: _Counted | None):
        self._context, self._on_end, self._counted = context, on_end, counted
        self._lock = threading.Lock()
        self._code: object = _RUNNING
        self._done_at = 0.0
        self._finished = False  # grpc has finished the call
        self._reported = False
        if not context.add_callback(self._grpc_finished):
            self._finished = True  # it had already

    def handler_done(self, error: BaseException | None) -> None:
        done_at = time.perf_counter()
        code = handler_code(self._context, error)
        with self._lock:
            if self._code is not _RUNNING:
                return
            self._code, self._done_at = code, done_at
        self._report_once_both_done()

    def _grpc_finished(self) -> None:
        with self._lock:
            self._finished = True
        self._report_once_both_done()

    def _report_once_both_done(self) -> None:
        with self._lock:
            if self._reported or self._code is _RUNNING or not self._finished:
                return
            self._reported = True
        code = self._code
        assert isinstance(code, grpc.StatusCode)
        if _cancelled_by_client(self._context):
            code = _ended_by_client(self._context)
        items = self._counted.items if self._counted is not None else None
        try:
            self._on_end(Outcome(code, self._done_at, items))
        except Exception:  # a watcher's bug must not change the call's outcome
            log.exception("a call watcher failed")


class _Counted:
    """A client stream's request iterator that counts what it hands out."""

    def __init__(self, requests: Iterator[Any], count: Callable[[Any], int]) -> None:
        self._requests, self._count = requests, count
        self.items = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        request = next(self._requests)
        self.items += self._count(request)
        return request


class _WatchedStream:
    """A response iterator that reports the end of its stream.

    grpc stops iterating without closing the iterator when the client has gone away, and
    just drops it; __del__ covers that case (CPython runs it as grpc's last reference goes).
    """

    def __init__(self, responses: Iterator[Any], ending: _Ending) -> None:
        self._responses, self._ending = responses, ending

    def __iter__(self) -> _WatchedStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._responses)
        except StopIteration:
            self._ending.handler_done(None)
            raise
        except BaseException as error:
            self._ending.handler_done(error)
            raise

    def close(self) -> None:
        """Close the handler's iterator (its own clean-up runs first), then report the end;
        a no-op for a stream already ended."""
        close = getattr(self._responses, "close", None)
        try:
            if close is not None:
                close()
        finally:
            self._ending.handler_done(GeneratorExit())

    def __del__(self) -> None:
        self.close()


def watch(
    handler: grpc.RpcMethodHandler,
    on_start: OnStart,
    count: Callable[[Any], int] | None = None,
) -> grpc.RpcMethodHandler:
    """The same handler, calling on_start as each call starts and its result as it ends;
    with `count`, what a client stream carried is counted too."""
    request_streaming = handler.request_streaming

    def begin(argument: Any, context: grpc.ServicerContext) -> tuple[Any, _Ending]:
        on_end = on_start(context)  # raises if it refuses the call
        counted = _Counted(argument, count) if request_streaming and count else None
        return counted if counted is not None else argument, _Ending(context, on_end, counted)

    def unary_response(behavior: Behavior) -> Behavior:
        def watched(argument: Any, context: grpc.ServicerContext) -> Any:
            argument, ending = begin(argument, context)
            try:
                response = behavior(argument, context)
            except BaseException as error:
                ending.handler_done(error)
                raise
            ending.handler_done(None)
            return response

        return watched

    def stream_response(behavior: Behavior) -> Behavior:
        def watched(argument: Any, context: grpc.ServicerContext) -> Any:
            argument, ending = begin(argument, context)
            try:
                responses = behavior(argument, context)
            except BaseException as error:
                ending.handler_done(error)
                raise
            return _WatchedStream(iter(responses), ending)

        return watched

    options: dict[str, Any] = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary), **options)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary), **options)
    make_streaming = (
        grpc.stream_stream_rpc_method_handler
        if request_streaming
        else grpc.unary_stream_rpc_method_handler
    )
    behavior = handler.stream_stream if request_streaming else handler.unary_stream
    assert behavior is not None
    return make_streaming(stream_response(behavior), **options)
