"""torchvision imports without ``torch._dynamo`` (``lightly_train._torchvision``),
and dynamo still works after it. Each check runs in a fresh interpreter: this one
has imported both long ago."""

import json
import subprocess
import sys
from pathlib import Path

from lightly_train.checkpoint import create_checkpoint


def run_fresh(code: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_an_embedder_loads_and_embeds_without_dynamo(tmp_path: Path) -> None:
    path = create_checkpoint(tmp_path / "c.ckpt")
    result = run_fresh(f"""
import json, sys
import numpy as np
from lightly_train.checkpoint import load_checkpoint_entry
from lightly_train.embedding.embedder import Embedder
embedder = Embedder(load_checkpoint_entry({str(path)!r}))
out = embedder.embed(np.zeros((2, 32, 32, 3), np.uint8))
dynamo = sorted(m for m in sys.modules if m.startswith("torch._dynamo"))
print(json.dumps({{"shape": list(out.shape), "dynamo": dynamo,
                  "torchvision": "torchvision" in sys.modules}}))
""")  # fmt: skip
    assert result == {"shape": [2, 512], "torchvision": True, "dynamo": []}


def test_dynamo_and_roi_align_work_after_the_import() -> None:
    result = run_fresh("""
import json, sys
import torch
from lightly_train._torchvision import torchvision
roi_align_module = sys.modules["torchvision.ops.roi_align"]
lazy = roi_align_module.is_compile_supported("cpu")  # imports the real dynamo
from torch._dynamo.utils import is_compile_supported
x, boxes = torch.rand(1, 3, 8, 8), torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
eager = torchvision.ops.roi_align(x, boxes, 2)
compiled = torch.compile(lambda x: torchvision.ops.roi_align(x, boxes, 2) * 2)(x)
utils = sys.modules["torch._dynamo.utils"]
print(json.dumps({"lazy": lazy, "real": is_compile_supported("cpu"),
                  "utils_is_real": hasattr(utils, "counters"),
                  "compiled_ok": bool(torch.allclose(compiled, eager * 2))}))
""")  # fmt: skip
    assert result == {
        "lazy": True,
        "real": True,
        "utils_is_real": True,
        "compiled_ok": True,
    }
