from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

VECTORS_DIR = Path(__file__).parent / "vectors"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS_DIR / "vectors.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="session")
def js_verify(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Verify envelopes with the independent JavaScript model (tweetnacl + bs58).

    Needs Node and the vectors' npm packages; in CI their absence is a failure, not a skip.
    """
    node = shutil.which("node")
    if node is None or not (VECTORS_DIR / "node_modules").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node and `npm ci` in tests/vectors are required in CI")
        pytest.skip("node or the vectors' node_modules missing (run `make install`)")

    def verify(envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        path = tmp_path_factory.mktemp("js") / "envelopes.json"
        path.write_text(json.dumps(envelopes, ensure_ascii=False), encoding="utf-8")
        out = subprocess.run(
            [node, str(VECTORS_DIR / "verify.mjs"), str(path)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        results: list[dict[str, Any]] = json.loads(out.stdout)["results"]
        return results

    return verify


@pytest.fixture(scope="session")
def js_replay_v4(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Replay pact-transcript/4.0 documents with the independent JavaScript model of the
    reference replayer (``vectors/transcript_v4.mjs``); same requirements as ``js_verify``."""
    node = shutil.which("node")
    if node is None or not (VECTORS_DIR / "node_modules").is_dir():
        if os.environ.get("CI"):
            pytest.fail("node and `npm ci` in tests/vectors are required in CI")
        pytest.skip("node or the vectors' node_modules missing (run `make install`)")

    def replay(transcripts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        folder = tmp_path_factory.mktemp("v4")
        paths = []
        for i, transcript in enumerate(transcripts):
            path = folder / f"{i}.json"
            path.write_text(json.dumps(transcript, ensure_ascii=False), encoding="utf-8")
            paths.append(str(path))
        out = subprocess.run(
            [node, str(VECTORS_DIR / "transcript_v4.mjs"), "verify", *paths],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        results: list[dict[str, Any]] = json.loads(out.stdout)["results"]
        return results

    return replay
