"""Section 11: what metrics, token auth and TLS add to a Query round trip.

Three real `fsserver` processes hold the same face-like vectors: one plain, one with
`--metrics-listen` and `--auth-token-file` (every call passes two more interceptors and
carries a token), one serving TLS. Each is queried with the same held-out vectors in
alternating blocks, so drift on a shared machine hits all three alike; the ratio is each
configuration's p50 over the plain server's. The search itself is the same in all three.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from bench.common import Context, Row, fsserver, percentile_ms, say
from bench.facelike import facelike
from fsclient import FaceSearchClient

K = 10
TOKEN = "bench-token"


def _pki(directory: Path) -> tuple[Path, Path, Path]:
    """CA, server certificate and key: the tests' own certificate authority."""
    from tests.certificates import make_pki  # needs `cryptography` (the dev extra)

    pki = make_pki(directory)
    return pki.ca.cert, pki.server.cert, pki.server.key


def run(ctx: Context) -> list[Row]:
    stored = 5_000 if ctx.quick else 20_000
    calls, warmup, rounds = (400, 100, 4) if ctx.quick else (3000, 300, 10)
    template = ctx.shared.get("real_embeddings")
    if template is None or len(template) < 2:  # section 1 did not run, or found no faces
        template = np.random.default_rng(12345).normal(0.0, 0.1, (64, ctx.dim))
    data = facelike(template, stored, ctx.seed + 110)
    vectors = data.vectors
    queries, _ = data.held_out(calls + warmup, ctx.seed + 111)
    with tempfile.TemporaryDirectory(dir=ctx.work_dir) as scratch, ExitStack() as stack:
        work = Path(scratch)
        token_file = work / "token"
        token_file.write_text(TOKEN)
        ca, cert, key = _pki(work / "pki")
        common = ("--dim", str(ctx.dim), "--embed-workers", "0")
        # A fixed ef: calibration running in one server but not another would skew it.
        fixed = ("--target-recall", "0", "--ef", "64")
        configurations = {
            "plain": (),
            "metrics + token": (
                *("--metrics-listen", "127.0.0.1:0"),
                *("--auth-token-file", str(token_file)),
            ),
            "TLS": ("--tls-cert", str(cert), "--tls-key", str(key)),
        }
        clients: dict[str, FaceSearchClient] = {}
        for name, flags in configurations.items():
            data = work / name.replace(" ", "").replace("+", "-")
            server = stack.enter_context(fsserver(*common, *fixed, "--data-dir", str(data), *flags))
            client = stack.enter_context(
                FaceSearchClient(
                    server.address,
                    token=TOKEN if "--auth-token-file" in flags else "",
                    tls_ca=ca if "--tls-cert" in flags else None,
                    tls=None if "--tls-cert" in flags else False,
                )
            )
            client.add_vectors(vectors, batch_size=1000)
            clients[name] = client
        say(f"operations: {stored} vectors in 3 servers; {calls} queries each")
        for client in clients.values():
            for q in queries[:warmup]:
                client.query(vector=q, k=K)
        times: dict[str, list[float]] = {name: [] for name in clients}
        block = calls // rounds
        for r in range(rounds):
            rows = queries[warmup + r * block : warmup + (r + 1) * block]
            for name, client in clients.items():
                for q in rows:
                    started = time.perf_counter()
                    client.query(vector=q, k=K)
                    times[name].append(time.perf_counter() - started)
    plain = statistics.median(times["plain"])
    result = []
    for name in ("metrics + token", "TLS"):
        p50 = statistics.median(times[name])
        result.append(
            Row(
                section="11 operations",
                metric=f"Query p50 ms, {name}",
                facesearch=p50 * 1e3,
                baseline=plain * 1e3,
                baseline_name="the same server without it",
                ratio=p50 / plain,
                params={"stored": stored, "calls": calls, "k": K, "ef": 64},
                note=f"p99 {percentile_ms(times[name], 99):.3f} vs "
                f"{percentile_ms(times['plain'], 99):.3f} ms",
            )
        )
    return result
