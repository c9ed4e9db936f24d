"""The committed gRPC stubs are what the .proto generates (regenerate with the command in
the module docstring of madrone/executors/grpc/__init__.py when the .proto changes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "madrone/executors/grpc"


def test_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{SRC}", f"--python_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", str(SRC / PACKAGE / "madrone.proto")],
        check=True,
    )  # fmt: skip
    for name in ("madrone_pb2.py", "madrone_pb2_grpc.py"):
        generated = (tmp_path / PACKAGE / name).read_text()
        assert generated == (SRC / PACKAGE / name).read_text(), f"{name} is stale"
