"""A user's first steps with an installed larq-adaptive, run from outside the source tree:
the installed package is the one imported, its version matches its metadata, the zoo and
the commands work, and a trained model reloads in a fresh process.

    python .ci/smoke.py WORKDIR
"""

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

work = Path(sys.argv[1])
scripts = Path(sys.executable).parent  # this venv's console scripts, wherever PATH points
work.mkdir(parents=True, exist_ok=True)

import larq_adaptive as lqa  # noqa: E402  (first: Keras 2 on every TensorFlow)
from larq_adaptive.models import available_models, get_model  # noqa: E402

assert "site-packages" in lqa.__file__, f"imported from the source tree: {lqa.__file__}"
assert metadata.version("larq-adaptive") == lqa.__version__, lqa.__version__
assert len([name for name in available_models() if not name.startswith("float_")]) == 16
profile = lqa.summary(get_model("adabin_resnet20"), print_fn=lambda *args, **kwargs: None)
assert profile.op_count("mac", 1) > 0

out = work / "run"
subprocess.run([scripts / "larq-adaptive-train", "--epochs", "1", "--steps-per-epoch", "2", "--verbose",
                "0", "--output-dir", str(out)], check=True, cwd=work)
accuracy = json.loads((out / "results.json").read_text())["test_accuracy"]
check = ("import larq_adaptive as lqa, numpy as np; m = lqa.load_model(%r); "
         "print(m(np.zeros((1,) + m.input_shape[1:], 'float32')).shape)" % str(out / "model.keras"))
shape = subprocess.run([sys.executable, "-c", check], check=True, capture_output=True, text=True,
                       cwd=work).stdout.strip().splitlines()[-1]
assert shape == "(1, 10)", shape
for command in ("larq-adaptive-export", "larq-adaptive-plot", "larq-adaptive-dwr-search",
                "larq-adaptive-report"):
    subprocess.run([scripts / command, "--help"], check=True, cwd=work, stdout=subprocess.DEVNULL)
print(f"smoke: larq-adaptive {lqa.__version__} from {Path(lqa.__file__).parent}: 16 binary models, "
      f"train 1 epoch -> test accuracy {accuracy:.3f}, model.keras reloads, 4 more commands")
