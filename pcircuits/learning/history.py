"""The per-epoch record of a training run, and its learning-curve picture."""
from __future__ import annotations

__all__ = ["History"]


class History(dict):
    """Per-epoch records of a training run (:func:`~pcircuits.learning.fit`): a dict of lists, one
    entry per epoch.

    Keys (those that apply to the run): ``epoch``; ``train_ll`` and ``train_loss`` (running
    means over the epoch's training batches, each measured before the update it led to, with
    dropout if any); ``train_acc``; ``valid_ll``, ``valid_loss``, ``valid_acc`` (the
    parameters at the end of the epoch, no dropout); ``seconds``. Log-likelihoods are means per
    example in nats; with labels, of the label's root.
    """

    def __init__(self, records: dict | None = None):
        super().__init__()
        for key, values in (records or {}).items():
            self[key] = list(values)

    def append(self, record: dict):
        """Add one epoch's values."""
        for key, value in record.items():
            self.setdefault(key, []).append(value)

    @property
    def num_epochs(self) -> int:
        return len(self.get("epoch", []))

    def plot(self, path, *, title: str = "learning curve") -> str:
        """Write a learning-curve PNG: log-likelihood (or loss) per epoch, and accuracy if measured.

        Returns
        -------
        str
            The path written.
        """
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = self.get("epoch", [])
        curves = [k for k in ("train_ll", "valid_ll") if k in self] or [k for k in ("train_loss", "valid_loss")
                                                                       if k in self]
        accuracy = [k for k in ("train_acc", "valid_acc") if k in self]
        fig, axes = plt.subplots(1, 2 if accuracy else 1, figsize=(10 if accuracy else 6, 4), squeeze=False)
        for key in curves:
            axes[0, 0].plot(epochs, self[key], marker="o", label=key.replace("_", " "))
        axes[0, 0].set_xlabel("epoch")
        axes[0, 0].set_ylabel("mean log-likelihood (nats)" if curves and curves[0].endswith("ll") else "loss")
        axes[0, 0].legend(loc="best")
        for key in accuracy:
            axes[0, 1].plot(epochs, self[key], marker="o", label=key.replace("_", " "))
        if accuracy:
            axes[0, 1].set_xlabel("epoch")
            axes[0, 1].set_ylabel("accuracy")
            axes[0, 1].legend(loc="best")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return str(path)
