"""PyTorch side of the step-parity harness: import the official code from the user's
checkout, run its training step, convert its tensors to our Keras layout (needs ``torch``)."""

import contextlib
import sys

import numpy as np
import torch

from _common import preprocess, to_keras, to_torch


@contextlib.contextmanager
def official_modules(code_dir, names):
    """Import ``names`` (module paths) from ``code_dir`` of the official checkout, then
    remove them from ``sys.modules`` again (several code bases reuse names like
    ``modules``/``utils``). The official code is used as it is; it is never copied."""
    before = set(sys.modules)
    sys.path.insert(0, str(code_dir))
    try:
        yield [__import__(name, fromlist=["_"]) for name in names]
    finally:
        sys.path.remove(str(code_dir))
        for name in set(sys.modules) - before:
            if name.split(".")[0] in {n.split(".")[0] for n in names}:
                del sys.modules[name]


def cpu_only_cuda():
    """The official trainers call ``.cuda()`` on tensors (AdaBin's EDE backward and
    ``Log_UP``); on a CPU-only machine make it a no-op so their code runs unchanged."""
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self


def torch_input(images):
    return torch.from_numpy(np.ascontiguousarray(preprocess(images).transpose(0, 3, 1, 2)))


class TorchStep:
    """The official trainer's step: ``criterion = nn.CrossEntropyLoss()``,
    ``optimizer.zero_grad(); loss.backward(); optimizer.step()`` in train mode."""

    def __init__(self, model, optimizer, names):
        self.model, self.optimizer, self.names = model, optimizer, names
        self.criterion = torch.nn.CrossEntropyLoss()

    def state(self):
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()
                if v.dtype.is_floating_point}

    def __call__(self, images, labels, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr  # what the per-epoch scheduler does
        self.model.train()
        before = self.state()
        loss = self.criterion(self.model(torch_input(images)), torch.from_numpy(labels))
        self.optimizer.zero_grad()
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters()}
        self.optimizer.step()
        after = self.state()
        deltas = {n: after[n] - before[n] for n in after}
        return float(loss.detach()), self.names.keras(grads), self.names.keras(deltas)

    def logits(self, images):
        self.model.eval()
        with torch.no_grad():
            return self.model(torch_input(images)).numpy()


class NameMap:
    """Official state-dict names <-> our Keras weight keys with their layout kinds.
    ``entries``: ``{torch name: (keras key, kind, keras shape)}``."""

    def __init__(self, entries, torch_shapes):
        self.entries, self.torch_shapes = entries, torch_shapes

    def keras(self, tensors):
        """``{torch name: tensor}`` -> ``{keras key: numpy}`` (names without a Keras weight,
        such as ``num_batches_tracked``, are dropped)."""
        out = {}
        for name, tensor in tensors.items():
            if name in self.entries:
                key, kind, shape = self.entries[name]
                out[key] = to_keras(tensor.detach().cpu().numpy(), kind, shape)
        return out

    def torch(self, arrays):
        """``{keras key: numpy}`` -> ``{torch name: tensor}`` (the other direction)."""
        out = {}
        for name, (key, kind, _) in self.entries.items():
            out[name] = torch.from_numpy(
                np.ascontiguousarray(to_torch(arrays[key], kind, self.torch_shapes[name])))
        return out

    def check_complete(self, model_keys, state_dict):
        """Every Keras weight but ``ede_k/ede_t`` and every float official tensor is mapped."""
        mapped = {key for key, _, _ in self.entries.values()}
        unmapped = [k for k in model_keys if k not in mapped and not k.endswith(("ede_k", "ede_t"))]
        orphans = [n for n, t in state_dict.items()
                   if n not in self.entries and t.dtype.is_floating_point]
        if unmapped or orphans:
            raise SystemExit(f"weight map incomplete: keras {unmapped}, official {orphans}")


def sign_flips(torch_inputs, keras_inputs, thresholds):
    """Per binarized layer: how many activations fall on different sides of the layer's
    threshold in the two frameworks (``x >= threshold``)."""
    flips = []
    for t, k, threshold in zip(torch_inputs, keras_inputs, thresholds):
        t = np.transpose(t, (0, 2, 3, 1))
        flips.append(int(np.sum((t >= threshold) != (k >= threshold))))
    return flips
