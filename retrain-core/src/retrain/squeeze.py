"""LoRA-Squeeze: exact spectrum of a peft LoRA adapter, a rank recommendation, and compression.

(arXiv 2602.10993; docs/squeeze.md.) For each adapted layer peft applies ``delta = s * B @ A`` with
``B [out, r]``, ``A [r, in]`` and ``s = alpha / r`` (``alpha / sqrt(r)`` with rsLoRA). Its singular
values are computed exactly without forming ``delta``::

    B   = Qb Rb            Qb [out, r], Rb [r, r]      (QR of B)
    A^T = Qa Ra            Qa [in, r],  Ra [r, r]      (QR of A^T, so A = Ra^T Qa^T)
    delta = s * Qb (Rb Ra^T) Qa^T;  Rb Ra^T = U S V^T  (SVD of the r x r core)
    => delta = (Qb U) (s S) (Qa V)^T: singular values s * S, singular vectors Qb U and Qa V.

Energy at rank k of one layer: ``e(k) = sum_{i<=k} sigma_i^2 / sum_i sigma_i^2``. The recommended
rank is the smallest k whose energy, averaged over layers (each layer counts once; layers whose
delta is exactly zero are left out), is >= the threshold. Keeping rank k loses exactly
``sqrt(1 - e(k))`` of the layer's delta in relative Frobenius norm (Eckart-Young).

Compression keeps the top k triplets and writes ``B' = Qb U_k sqrt(S_k)``, ``A' = sqrt(S_k) V_k^T Qa^T``
(balanced split). The scale is kept: ``s' = s``, i.e. ``alpha' = alpha * k / r`` (rsLoRA:
``alpha * sqrt(k / r)``), so further training at rank k sees the same effective step size;
``s' * B' @ A'`` is then exactly the rank-k truncation of ``delta``.

torch and safetensors are imported inside functions (the CLI must start fast).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrain.errors import RetrainError

if TYPE_CHECKING:
    import torch

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
_PAIR = re.compile(r"^(?P<prefix>.*)\.lora_(?P<emb>embedding_)?(?P<ab>[AB])(?P<suffix>(\.[^.]+)?\.weight)$")
_PAIR_NOSUFFIX = re.compile(r"^(?P<prefix>.*)\.lora_(?P<emb>embedding_)?(?P<ab>[AB])$")


@dataclass
class LayerSpectrum:
    """One adapted module: its rank, scale and the singular values of its delta."""

    name: str  # module name as peft targets it, e.g. model.layers.0.self_attn.q_proj
    rank: int
    scale: float
    sigma: list[float]  # singular values of s * B @ A, descending, length = rank

    @property
    def total_energy(self) -> float:
        return float(sum(x * x for x in self.sigma))

    def energy(self, k: int) -> float:
        """Fraction of sum(sigma^2) kept by the top-k singular values (1.0 for a zero delta)."""
        total = self.total_energy
        if total == 0.0:
            return 1.0
        return float(sum(x * x for x in self.sigma[: max(0, k)]) / total)

    def rank_for(self, energy: float) -> int:
        """Smallest k with energy(k) >= threshold (0 for a zero delta)."""
        if self.total_energy == 0.0:
            return 0
        for k in range(1, self.rank + 1):
            if self.energy(k) >= energy - 1e-12:
                return k
        return self.rank


@dataclass
class SqueezeReport:
    adapter: str
    rank: int  # the adapter's configured r
    energy_threshold: float
    recommended_rank: int
    mean_energy_at_recommended: float
    layers: list[dict[str, Any]] = field(default_factory=list)
    zero_layers: int = 0
    compressed: dict[str, Any] | None = None  # filled by compress

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _module_name(prefix: str) -> str:
    for head in ("base_model.model.", "base_model."):
        if prefix.startswith(head):
            return prefix[len(head):]
    return prefix


def _pattern_value(patterns: dict[str, Any], name: str, default: Any) -> Any:
    """peft's rank_pattern / alpha_pattern lookup: the key matches the end of the module name."""
    for key, value in patterns.items():
        if name == key or re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def read_adapter(adapter_dir: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(adapter_config, tensors) of a peft adapter folder, with a one-line error when it is not one."""
    from safetensors.torch import load_file

    path = Path(adapter_dir)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise RetrainError(f"{adapter_dir}: not a peft LoRA adapter (needs {CONFIG} and {WEIGHTS}). "
                           "Point at a run's adapter folder, e.g. runs/NAME/checkpoints/step_N/adapter.")
    config = json.loads((path / CONFIG).read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise RetrainError(f"{adapter_dir}: peft_type {config.get('peft_type')!r}; squeeze handles LORA adapters only.")
    return config, load_file(str(path / WEIGHTS))


def _pairs(tensors: dict[str, torch.Tensor], where: str) -> dict[str, tuple[str, str]]:
    """module name -> (key of A, key of B)."""
    found: dict[str, dict[str, str]] = {}
    for key in tensors:
        m = _PAIR.match(key) or _PAIR_NOSUFFIX.match(key)
        if m:
            found.setdefault(m["prefix"], {})[m["ab"]] = key
    pairs = {}
    for prefix, ab in sorted(found.items()):
        if set(ab) != {"A", "B"}:
            raise RetrainError(f"{where}: module {prefix} has lora_{next(iter(ab))} but not its partner; "
                               "the adapter file is incomplete.")
        pairs[_module_name(prefix)] = (ab["A"], ab["B"])
    if not pairs:
        raise RetrainError(f"{where}: no lora_A/lora_B tensors found in {WEIGHTS}.")
    return pairs


def _scale(config: dict[str, Any], name: str, rank: int) -> float:
    alpha = float(_pattern_value(config.get("alpha_pattern") or {}, name, config.get("lora_alpha", 8)))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _factor(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Qb, Qa, U, S, V) with B @ A = (Qb U) diag(S) (Qa V)^T, in float64."""
    import torch

    r = a.shape[0]
    a2 = a.reshape(r, -1).double()                      # [r, in]
    b2 = b.reshape(b.shape[0], r).double()              # [out, r]
    qb, rb = torch.linalg.qr(b2)                        # [out, r], [r, r]
    qa, ra = torch.linalg.qr(a2.T)                      # [in, r], [r, r]
    u, s, vh = torch.linalg.svd(rb @ ra.T)              # [r, r], [r], [r, r]
    return qb, qa, u, s, vh.T


def analyze(adapter_dir: str | Path, energy: float = 0.95) -> SqueezeReport:
    """Exact per-layer singular values and the rank recommendation at ``energy``."""
    if not 0.0 < energy <= 1.0:
        raise RetrainError(f"squeeze energy = {energy}: must be in (0, 1], e.g. 0.95.")
    config, tensors = read_adapter(adapter_dir)
    spectra = _spectra(config, tensors, str(adapter_dir))
    return _report(str(adapter_dir), int(config.get("r", max(s.rank for s in spectra))), energy, spectra)


def _spectra(config: dict[str, Any], tensors: dict[str, torch.Tensor], where: str) -> list[LayerSpectrum]:
    out = []
    for name, (ka, kb) in _pairs(tensors, where).items():
        a, b = tensors[ka], tensors[kb]
        rank = a.shape[0]
        scale = _scale(config, name, rank)
        *_, s, _ = _factor(a, b)
        out.append(LayerSpectrum(name, rank, scale, [float(x) * abs(scale) for x in s]))
    return out


def mean_energy(spectra: list[LayerSpectrum], k: int) -> float:
    """Energy at rank k averaged over the layers whose delta is non-zero (1.0 if there are none)."""
    live = [sp for sp in spectra if sp.total_energy > 0]
    return sum(sp.energy(k) for sp in live) / len(live) if live else 1.0


def recommend_rank(spectra: list[LayerSpectrum], energy: float) -> int:
    """Smallest k >= 1 whose mean energy over non-zero layers reaches ``energy``."""
    max_rank = max(sp.rank for sp in spectra)
    for k in range(1, max_rank + 1):
        if mean_energy(spectra, k) >= energy - 1e-12:
            return k
    return max_rank


def _report(adapter: str, rank: int, energy: float, spectra: list[LayerSpectrum]) -> SqueezeReport:
    k = recommend_rank(spectra, energy)
    layers = [{"name": sp.name, "rank": sp.rank, "scale": sp.scale, "sigma": sp.sigma,
               "energy_at_recommended": sp.energy(k), "rank_for_threshold": sp.rank_for(energy),
               "rel_frobenius_error_at_recommended": math.sqrt(max(0.0, 1.0 - sp.energy(k)))}
              for sp in spectra]
    return SqueezeReport(adapter, rank, energy, k, mean_energy(spectra, k), layers,
                         zero_layers=sum(sp.total_energy == 0 for sp in spectra))


def compress(adapter_dir: str | Path, out_dir: str | Path, rank: int | None = None,
             energy: float = 0.95) -> SqueezeReport:
    """Write a valid peft adapter at rank ``rank`` (default: the recommendation at ``energy``) to
    ``out_dir``; the report's ``compressed`` part has the measured relative Frobenius error per
    layer and overall (sqrt of summed squared errors over summed squared norms)."""
    from safetensors.torch import save_file

    config, tensors = read_adapter(adapter_dir)
    where = str(adapter_dir)
    if config.get("use_dora"):
        raise RetrainError(f"{where}: DoRA adapters cannot be compressed (the magnitude vector depends on the rank-r "
                           "direction); analyse only (drop --out / --rank).")
    spectra = _spectra(config, tensors, where)
    report = _report(where, int(config.get("r", 0)), energy, spectra)
    k = report.recommended_rank if rank is None else int(rank)
    if k < 1:
        raise RetrainError(f"squeeze --rank {k}: must be at least 1.")
    out_dir = Path(out_dir)
    if out_dir.resolve() == Path(adapter_dir).resolve():
        raise RetrainError(f"squeeze --out {out_dir}: is the input adapter; choose another folder.")
    new_tensors = {key: t for key, t in tensors.items()}
    base_r = int(config.get("r", k))
    new_r = min(k, base_r)
    global_alpha = _alpha_for(float(config.get("lora_alpha", 8)) / _denom(config, base_r), new_r, config)
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, float] = {}
    errors, num, den = [], 0.0, 0.0
    for sp, (name, (ka, kb)) in zip(spectra, _pairs(tensors, where).items(), strict=True):
        a, b = tensors[ka], tensors[kb]
        kl = min(k, sp.rank)
        qb, qa, u, s, v = _factor(a, b)
        root = s[:kl].sqrt()                                          # [k]
        b_new = (qb @ u[:, :kl]) * root                               # [out, k]
        a_new = (root[:, None] * v[:, :kl].T) @ qa.T                  # [k, in]
        new_tensors[kb] = b_new.reshape(b.shape[0], kl, *b.shape[2:]).to(b.dtype).contiguous()
        new_tensors[ka] = a_new.reshape(kl, *a.shape[1:]).to(a.dtype).contiguous()
        alpha_l = _alpha_for(sp.scale, kl, config)
        if kl != new_r:
            rank_pattern[name] = kl
        if not math.isclose(alpha_l, global_alpha, rel_tol=1e-9):
            alpha_pattern[name] = alpha_l
        sq_err, sq_norm = _sq_error(a, b, sp.scale, new_tensors[ka], new_tensors[kb], sp.scale)
        num, den = num + sq_err, den + sq_norm
        errors.append({"name": name, "rank": kl,
                       "rel_frobenius_error": math.sqrt(sq_err / sq_norm) if sq_norm > 0 else 0.0,
                       "predicted": math.sqrt(max(0.0, 1.0 - sp.energy(kl)))})
    new_config = dict(config, r=new_r, lora_alpha=global_alpha, rank_pattern=rank_pattern, alpha_pattern=alpha_pattern)
    out_dir.mkdir(parents=True, exist_ok=True)
    for extra in Path(adapter_dir).iterdir():  # README.md etc. travel along
        if extra.is_file() and extra.name not in (CONFIG, WEIGHTS):
            shutil.copy2(extra, out_dir / extra.name)
    save_file(new_tensors, str(out_dir / WEIGHTS), metadata={"format": "pt"})
    (out_dir / CONFIG).write_text(json.dumps(new_config, indent=2, sort_keys=True))
    report.compressed = {"out": str(out_dir), "rank": new_r, "lora_alpha": global_alpha,
                         "rel_frobenius_error": math.sqrt(num / den) if den > 0 else 0.0, "layers": errors}
    return report


def _denom(config: dict[str, Any], rank: int) -> float:
    return math.sqrt(rank) if config.get("use_rslora") else float(rank)


def _alpha_for(scale: float, rank: int, config: dict[str, Any]) -> float:
    """The alpha that gives ``scale`` at ``rank`` (alpha / r, or alpha / sqrt(r) with rsLoRA)."""
    return scale * _denom(config, rank)


def _sq_error(a: torch.Tensor, b: torch.Tensor, s: float, a2: torch.Tensor, b2: torch.Tensor,
              s2: float) -> tuple[float, float]:
    """(||s B A - s2 B2 A2||_F^2, ||s B A||_F^2) through (r+k) x (r+k) Gram matrices, never [out, in]."""
    import torch

    r, k = a.shape[0], a2.shape[0]
    c = torch.cat([s * b.reshape(b.shape[0], r).double(), -s2 * b2.reshape(b2.shape[0], k).double()], 1)  # [out, r+k]
    d = torch.cat([a.reshape(r, -1).double(), a2.reshape(k, -1).double()], 0)                              # [r+k, in]
    cc, dd = c.T @ c, d @ d.T                                                                               # [r+k, r+k]
    err = float((cc * dd).sum())  # trace(C^T C D D^T), both symmetric
    norm = float((cc[:r, :r] * dd[:r, :r]).sum())
    return max(0.0, err), max(0.0, norm)


def format_report(report: SqueezeReport, top: int = 8) -> str:
    """A human-readable summary: recommendation, then the layers needing the most rank."""
    lines = [f"adapter {report.adapter}: rank {report.rank}, {len(report.layers)} layers"
             + (f" ({report.zero_layers} with a zero delta, left out of the average)" if report.zero_layers else ""),
             f"recommended rank {report.recommended_rank} keeps {report.mean_energy_at_recommended:.4f} of the "
             f"spectral energy on average over layers (threshold {report.energy_threshold})"]
    if report.zero_layers == len(report.layers):
        lines[1] = ("every layer's delta is exactly zero (an untrained adapter: peft starts B at 0); "
                    "nothing to squeeze yet")
    ranked = sorted(report.layers, key=lambda ly: -ly["rank_for_threshold"])[:top]
    lines.append(f"{'layer':56} {'rank@thr':>8} {'energy@k':>9} {'rel.err@k':>9}  top sigma")
    for ly in ranked:
        sig = ", ".join(f"{x:.3g}" for x in ly["sigma"][:3])
        lines.append(f"{ly['name'][-56:]:56} {ly['rank_for_threshold']:>8} {ly['energy_at_recommended']:>9.4f} "
                     f"{ly['rel_frobenius_error_at_recommended']:>9.4f}  {sig}")
    if len(report.layers) > top:
        lines.append(f"... {len(report.layers) - top} more layers (--json for all)")
    if report.compressed:
        c = report.compressed
        worst = max(c["layers"], key=lambda ly: ly["rel_frobenius_error"])
        lines.append(f"wrote {c['out']}: rank {c['rank']}, lora_alpha {c['lora_alpha']:g}; relative Frobenius error "
                     f"overall {c['rel_frobenius_error']:.4g}, worst layer {worst['rel_frobenius_error']:.4g} ({worst['name']})")
    return "\n".join(lines)
