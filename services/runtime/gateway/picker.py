"""The local endpoint picker as an Envoy ext_proc gRPC service, the way llm-d's EPP plugs into Envoy.

Envoy streams each request's headers and (buffered) body to :class:`ExtProcPicker`; the picker
scores the replicas (:mod:`.scoring`) and answers with the header
``x-gateway-destination-endpoint: ip:port``; Envoy's ORIGINAL_DST cluster, keyed on that header,
connects to exactly that replica. A request without a body (``GET /v1/models``) is picked on its
headers alone. The picker runs as its own process (``python -m services.runtime.gateway``),
so its CPU does not share a GIL with the replicas or the load client; :class:`PickerServer` is its
:class:`~services.runtime.local_server.LocalServer`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from collections.abc import AsyncIterator

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc

from services.runtime.gateway.envoy import DESTINATION_HEADER
from services.runtime.gateway.scoring import EndpointState, MetricsScraper, Picker, Weights, prompt_of
from services.runtime.local_server import LocalServer
from services.runtime.processes import free_port

logger = logging.getLogger(__name__)


def _destination(address: str) -> ext_proc.CommonResponse:
    return ext_proc.CommonResponse(
        header_mutation=ext_proc.HeaderMutation(
            set_headers=[
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=DESTINATION_HEADER, raw_value=address.encode()),
                    append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                )
            ]
        )
    )


class ExtProcPicker(ext_proc_grpc.ExternalProcessorServicer):
    """One ext_proc stream per HTTP request: pick on the body (or on headers when there is none)."""

    def __init__(self, picker: Picker) -> None:
        self.picker = picker

    async def Process(
        self, request_iterator: AsyncIterator[ext_proc.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ext_proc.ProcessingResponse]:
        body = bytearray()
        async for message in request_iterator:
            kind = message.WhichOneof("request")
            if kind == "request_headers":
                if message.request_headers.end_of_stream:
                    response = _destination(self.picker.pick(""))
                else:
                    response = ext_proc.CommonResponse()
                yield ext_proc.ProcessingResponse(request_headers=ext_proc.HeadersResponse(response=response))
            elif kind == "request_body":
                body += message.request_body.body
                if message.request_body.end_of_stream:
                    address = self.picker.pick(prompt_of(bytes(body)))
                    yield ext_proc.ProcessingResponse(
                        request_body=ext_proc.BodyResponse(response=_destination(address))
                    )
                else:
                    yield ext_proc.ProcessingResponse(request_body=ext_proc.BodyResponse())


async def serve(host: str, port: int, endpoints: list[str], interval: float, weights: Weights) -> None:
    states = [EndpointState(address) for address in endpoints]
    scraper = MetricsScraper(states, interval)
    server = grpc.aio.server()
    ext_proc_grpc.add_ExternalProcessorServicer_to_server(ExtProcPicker(Picker(states, weights)), server)
    server.add_insecure_port(f"{host}:{port}")
    scraping = asyncio.create_task(scraper.run())
    await server.start()
    try:
        await server.wait_for_termination()
    finally:
        scraping.cancel()


class PickerServer(LocalServer):
    """The picker on loopback as a child process; ready when its gRPC port accepts connections."""

    name = "endpoint-picker"
    ready_timeout = 20.0

    def __init__(
        self,
        endpoints: list[str],
        *,
        interval: float = 0.05,
        weights: Weights | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port or free_port(host))
        self.endpoints = list(endpoints)
        self.interval = interval
        self.weights = weights or Weights()

    def argv(self) -> list[str]:
        w = self.weights
        return [
            sys.executable, "-m", "services.runtime.gateway",
            "--host", self.host, "--port", str(self.port), "--interval", str(self.interval),
            "--weights", f"{w.prefix},{w.queue},{w.kv}", *self.endpoints,
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local endpoint picker (Envoy ext_proc), a stand-in for GAIE's EPP")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.05, help="metrics refresh interval (s)")
    parser.add_argument("--weights", default="3,2,2", help="prefix,queue,kv scorer weights")
    parser.add_argument("endpoints", nargs="+", help="replicas as ip:port")
    args = parser.parse_args(argv)
    try:
        prefix, queue, kv = (float(x) for x in args.weights.split(","))
    except ValueError:
        parser.error(f"--weights must be three numbers prefix,queue,kv, got {args.weights!r}")
    asyncio.run(serve(args.host, args.port, args.endpoints, args.interval, Weights(prefix, queue, kv)))
