"""Step parity of ReActNet-A and ReAct-ResNet-18 against the official PyTorch code
(liuzechun/ReActNet).

Two modes, two virtual environments:

* reference (needs PyTorch, ``pip install -e ".[torch]"``)::

      python benchmarks/parity/reactnet_step.py --official-repo PATH/TO/ReActNet

  imports ``mobilenet/{1_step1,2_step2}/reactnet.py``, ``resnet/{1_step1,2_step2}/birealnet.py``
  and ``utils/KD_loss.py`` from the user's checkout (nothing of it is copied here), builds
  the official ``reactnet`` class at a reduced width (its module-level ``stage_out_channel``
  list set to :data:`_reactnet_common.CHANNELS`, ``fc`` resized) and the official
  ``BiRealNet`` class with one ``BasicBlock`` per stage, and runs two training steps of each
  in float64 exactly as ``*/train.py`` does (Adam with its two parameter groups,
  ``LambdaLR(1 - e / E)`` stepped before each epoch, ``DistributionLoss`` against a fixed
  teacher output). It writes ``tests/data/parity/{reactnet_a,reactnet_resnet18}_step{1,2}.npz``:
  initial weights in the official naming (ResNet-18: the seed that regenerates them), the
  batch, the teacher logits, the loss, every gradient, every tensor after each step (Adam
  state and BN running statistics included; ResNet-18: 4 random projections per tensor),
  eval-mode logits, and the float32 pre-sign activations (for the sign-flip count).

* check (the project's environment, no PyTorch)::

      python benchmarks/parity/reactnet_step.py --check

  converts the official weights into our networks, runs the same two steps with our
  training code and prints the max relative difference per group.
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _reactnet_common as common  # noqa: E402


def _load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def official_modules(repo, step, model="reactnet_a"):
    """The official network module of ``step`` (1 or 2: ``mobilenet/*/reactnet.py`` or
    ``resnet/*/birealnet.py``) and ``KD_loss``."""
    try:
        import torch  # noqa: F401
    except ImportError:
        print('error: --official-repo needs PyTorch (pip install -e ".[torch]")', file=sys.stderr)
        raise SystemExit(2) from None
    repo = Path(repo)
    net = (repo / "mobilenet" / f"{step}_step{step}" / "reactnet.py" if model == "reactnet_a"
           else repo / "resnet" / f"{step}_step{step}" / "birealnet.py")
    kd = repo / "utils" / "KD_loss.py"
    for path in (net, kd):
        if not path.is_file():
            print(f"error: {path} not found (is --official-repo a ReActNet checkout?)",
                  file=sys.stderr)
            raise SystemExit(2)
    return (_load_module(net, f"official_{model}_step{step}"),
            _load_module(kd, "official_kd_loss"))


def build_official(module, channels, num_classes):
    """The official ``reactnet`` class at width ``channels`` (its module-level channel list
    is set before construction; ``fc`` is hard-wired to 1024 inputs, so it is rebuilt)."""
    import torch.nn as nn

    module.stage_out_channel = list(channels)
    model = module.reactnet(num_classes=num_classes)
    model.fc = nn.Linear(channels[-1], num_classes)
    return model


def randomize(model, step, generator):
    """Non-trivial initial values (BN, shifts and slopes away from their init, a few step-2
    latent weights outside [-1, 1] so the clipped STE is exercised)."""
    import torch

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            shape = tensor.shape
            if name.endswith("running_var") or ".bn" in name and name.endswith(".weight"):
                new = 0.5 + torch.rand(shape, generator=generator, dtype=torch.float64)
            elif name.endswith("running_mean") or ".bn" in name and name.endswith(".bias"):
                new = 0.1 * torch.randn(shape, generator=generator, dtype=torch.float64)
            elif ".move" in name:
                new = 0.2 * torch.randn(shape, generator=generator, dtype=torch.float64)
            elif ".prelu" in name:
                new = 0.1 + 0.3 * torch.rand(shape, generator=generator, dtype=torch.float64)
            else:  # conv / fc: PyTorch's default init scale, +-1/sqrt(fan_in)
                fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
                if name.endswith(".weights"):  # HardBinaryConv (out*in*k*k, 1)
                    fan_in = int(np.prod(model.get_submodule(name[:-len(".weights")]).shape[1:]))
                bound = 1.0 / np.sqrt(fan_in)
                new = (2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1) * bound
                if step == 2 and name.endswith(".weights"):
                    outside = torch.rand(shape, generator=generator, dtype=torch.float64) < 0.05
                    new = torch.where(outside, new * 3.0 / bound, new)
            tensor.copy_(new.to(tensor.dtype))


def official_param_groups(model, weight_decay):
    """``mobilenet/*/train.py`` lines 77-88: 4-D parameters or names containing 'conv' get
    ``weight_decay``, all others none (Adam's default)."""
    import torch

    weight = [p for n, p in model.named_parameters() if p.ndimension() == 4 or "conv" in n]
    ids = {id(p) for p in weight}
    other = [p for p in model.parameters() if id(p) not in ids]
    names = [n for n, p in model.named_parameters() if id(p) in ids]
    return [{"params": other}, {"params": weight, "weight_decay": weight_decay}], names


def presign_inputs(model, images):
    """The float32 inputs of every ``BinaryActivation`` call (train-mode forward)."""
    import torch

    found = []
    hooks = [m.register_forward_hook(lambda m, i, o: found.append(i[0].detach().numpy().copy()))
             for m in model.modules() if type(m).__name__ == "BinaryActivation"]
    with torch.no_grad():
        model.train()
        model(images)
    for h in hooks:
        h.remove()
    return found


def make_reference(repo, step, out, model_name="reactnet_a"):
    module, kd = official_modules(repo, step, model_name)  # checks PyTorch and the checkout
    import copy

    import torch

    torch.manual_seed(0)
    cfg = common.config(step, model_name)
    generator = torch.Generator().manual_seed(1234 + step)
    count = cfg.get("projections")
    if model_name == "reactnet_a":
        model = build_official(module, cfg["channels"], cfg["num_classes"]).double()
        randomize(model, step, generator)
    else:  # the official class as is, one BasicBlock per stage
        model = module.BiRealNet(module.BasicBlock, cfg["blocks"],
                                 num_classes=cfg["num_classes"]).double()
        cfg["shapes"] = [[n, list(v.shape)] for n, v in model.state_dict().items()
                         if not n.endswith("num_batches_tracked")]
        state = common.random_state(cfg["shapes"], step, cfg["seed"])
        result = model.load_state_dict({n: torch.from_numpy(v) for n, v in state.items()},
                                       strict=False)
        assert all(n.endswith("num_batches_tracked") for n in result.missing_keys), result

    def stored(name, value):
        value = value.detach().numpy().copy()
        return common.project(name, value, count) if count else value

    images = torch.randn((cfg["batch"], 3, cfg["size"], cfg["size"]), generator=generator,
                         dtype=torch.float64)
    teacher = 2.0 * torch.randn((cfg["batch"], cfg["num_classes"]), generator=generator,
                                dtype=torch.float64)
    arrays = {"images": images.numpy(), "teacher_logits": teacher.numpy(),
              "config": np.array(json.dumps(cfg))}
    float32_model = copy.deepcopy(model).float()
    for i, x in enumerate(presign_inputs(float32_model, images.float())):
        arrays[f"f32_presign/{i}"] = np.sign(x).astype(np.int8) if count else x
    if not count:  # else regenerated from cfg["shapes"] and cfg["seed"]
        for name, value in model.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                arrays[f"init/{name}"] = value.numpy().copy()

    criterion = kd.DistributionLoss()
    groups, decayed = official_param_groups(model, cfg["weight_decay"])
    arrays["decayed_names"] = np.array(decayed)
    optimizer = torch.optim.Adam(groups, lr=cfg["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: 1.0 - e / cfg["epochs"], last_epoch=-1
    )
    model.eval()
    with torch.no_grad():
        arrays["eval_logits/0"] = model(images).numpy()
    params = dict(model.named_parameters())
    for k in (1, 2):  # one step per "epoch": the lr changes between them
        model.train()
        scheduler.step()  # train.py: at the start of every epoch
        arrays[f"step{k}/lr"] = np.array(optimizer.param_groups[0]["lr"])
        logits = model(images)
        loss = criterion(logits, teacher)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        arrays[f"step{k}/loss"] = np.array(loss.item())
        for name, p in params.items():
            arrays[f"step{k}/grad/{name}"] = stored(name, p.grad)
            state = optimizer.state[p]
            arrays[f"step{k}/exp_avg/{name}"] = stored(name, state["exp_avg"])
            arrays[f"step{k}/exp_avg_sq/{name}"] = stored(name, state["exp_avg_sq"])
        for name, value in model.state_dict().items():
            if not name.endswith("num_batches_tracked"):
                arrays[f"step{k}/param/{name}"] = stored(name, value)
        model.eval()
        with torch.no_grad():
            arrays[f"eval_logits/{k}"] = model(images).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): loss {arrays['step1/loss']:.12g}, "
          f"{arrays['step2/loss']:.12g}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", help="checkout of github.com/liuzechun/ReActNet")
    parser.add_argument("--check", action="store_true",
                        help="compare our step with the stored references (no PyTorch)")
    parser.add_argument("--data-dir", default=str(common.DATA_DIR),
                        help="folder of the reference .npz files (default: %(default)s)")
    args = parser.parse_args(argv)
    data = Path(args.data_dir)
    if args.check:
        return common.check_main(data, method="reactnet")
    if not args.official_repo:
        print("error: give --official-repo PATH (reference mode) or --check", file=sys.stderr)
        return 2
    for model in common.MODELS:
        for step in (1, 2):
            make_reference(args.official_repo, step, data / f"{model}_step{step}.npz", model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
