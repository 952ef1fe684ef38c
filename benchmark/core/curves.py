"""The keys of a run's per-epoch curve (`record["curve"]`) and what they mean: one table that the training loop, the
diagnostics and the report read, so a key is named and labelled once."""

from __future__ import annotations

BOOKKEEPING = ("epoch", "seconds", "diagnostics_seconds", "steps_images")
LOSS_PARTS = {
    "total": "total loss",
    "cl": "classification  $L_{cl}$",
    "am": "attention mining  $L_{am}$",
    "e": "external supervision  $L_e$",
}
# Per-epoch training diagnostics (benchmark.execute.diagnostics): key -> (panel title, y axis).
DIAGNOSTICS = {
    "mask_share": ("erased share of the image, mean $T(A)$", "share"),
    "grad_norm_total": ("gradient norm, method's update", "L2 norm"),
    "grad_norm_cl": ("gradient norm, $L_{cl}$", "L2 norm"),
    "grad_norm_am": ("gradient norm, $L_{am}$", "L2 norm"),
    "grad_norm_e": ("gradient norm, $L_e$", "L2 norm"),
    "grad_cos_exact": ("cos(method's gradient, exact gradient)", "cosine"),
    "step_cos_exact": ("cos(optimiser's step, exact descent)", "cosine"),
    "bn_shift_natural": ("BatchNorm input mean shift, natural images", "running-$\\sigma$ units"),
    "bn_shift_erased": ("BatchNorm input mean shift, erased images", "running-$\\sigma$ units"),
    "bn_scale_natural": ("BatchNorm input |log scale ratio|, natural", "|log $\\sigma_b / \\sigma_r$|"),
    "bn_scale_erased": ("BatchNorm input |log scale ratio|, erased", "|log $\\sigma_b / \\sigma_r$|"),
    "cl_batch": ("$L_{cl}$, batch statistics (as trained)", "loss"),
    "cl_running": ("$L_{cl}$, running statistics (as evaluated)", "loss"),
    "erased_score_batch": ("score left after erasing, batch statistics", "score"),
    "erased_score_running": ("score left after erasing, running statistics", "score"),
    "lr": ("learning rate at the epoch's end", "lr"),
    "heldout_val_map": ("held-out in-distribution mAP", "mAP"),
    "heldout_val_accuracy": ("held-out in-distribution accuracy", "accuracy"),
    "heldout_class_without_context": ("held-out class without context", "accuracy"),
    "heldout_context_without_class": ("held-out context without class", "accuracy"),
    "heldout_shifted_auroc": ("held-out shifted AUROC", "AUROC"),
}
