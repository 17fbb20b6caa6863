"""Grouping run records into table rows: mean ± population sd over seeds, and the published comparison.

:func:`summarize` makes one row per (dataset, rung, angle mode) from the complete runs;
:func:`incomplete_runs` lists the others. Statistics follow the paper: mean and *population*
standard deviation (ddof=0) over seeds, accuracies in percent. Each row also carries the per-seed
final test accuracies, so rungs can be compared seed by seed (:mod:`qcreep.report.compare`).

A rung is named as :mod:`qcreep.report.rungs` says: an assignment that equals a replacement level
is that level, so the published numbers apply to it, and a model recorded under two labels (once as
``"level 2"``, once as its assignment) is one rung whose seeds are counted once.
"""

from __future__ import annotations

import json
import math

import numpy as np

from qcreep.published import (
    PUBLISHED_EPOCHS,
    PUBLISHED_TORCH_PROTOCOL,
    published_at,
    published_at_or_before,
    published_jax,
)
from qcreep.report.records import PATH_KEY, is_complete, plural
from qcreep.report.rungs import num_classes, record_level, record_sort_key, rung_name, sort_key, twin_target

#: A rung whose mean final test accuracy is below chance plus this many percentage points is flagged.
NEAR_CHANCE_PP = 3.0

#: Head layers whose readout options (output scale, bias initialisation) a record's ``readout`` describes:
#: the re-uploading head and its classical twin, which takes the same options.
READOUT_HEADS = ("data_reuploading", "dense_twin")


def _mean_sd(values) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=0))


def _mean_sd_or_none(values) -> tuple[float | None, float | None]:
    return _mean_sd(values) if len(values) else (None, None)


def _same(values) -> bool:
    texts = {json.dumps(v, sort_keys=True) for v in values}
    return len(texts) <= 1


def _common(values):
    """The value every entry shares, or None when they differ (or there are none)."""
    values = list(values)
    return values[0] if values and _same(values) else None


def _differing_config_keys(records: list[dict], ignore=()) -> list[str]:
    """Config keys (ignoring the seed and ``ignore``) whose values differ between the records of a group."""
    keys = set()
    for rec in records:
        keys.update((rec.get("config") or {}).keys())
    keys.discard("seed")
    keys.difference_update(ignore)
    return [key for key in sorted(keys) if not _same((rec.get("config") or {}).get(key) for rec in records)]


def _common_config(records: list[dict]) -> dict:
    configs = [rec.get("config") or {} for rec in records]
    out = {}
    for key in set().union(*[c.keys() for c in configs]):
        values = [c.get(key) for c in configs]
        if _same(values):
            out[key] = values[0]
    return out


def _uses_reuploading(level, assignment: dict | None) -> bool:
    if assignment and isinstance(assignment.get("head"), str):
        return "reupload" in assignment["head"]
    return level == 2


def _has_readout_head(level, assignment: dict | None) -> bool:
    """True when a layer of the rung takes the readout options: a re-uploading layer or its twin, in any
    slot (the head of HybridNet, or any dense slot of the user's own model)."""
    if assignment:
        layers = [v for v in assignment.values() if isinstance(v, str)]
        return any(v in READOUT_HEADS or "reupload" in v for v in layers)
    return level == 2


def failed_seeds(final_by_seed: dict, chance: float | None) -> list[dict]:
    """Seeds that stayed near chance while the other seeds of their rung trained.

    A seed is *failed* when the median final test accuracy of the rung's other seeds is more than
    :data:`NEAR_CHANCE_PP` above chance (they trained), and the seed itself is either within
    :data:`NEAR_CHANCE_PP` of chance (the rule of the chance flag, applied to one seed) or closer to
    chance than to that median (it got less than half of the way from chance to where the others got).
    The rule needs at least two seeds and the class count. Returns ``[{"seed", "final_test",
    "others_median"}]`` (percent), by seed.

    Example:
        >>> [f["seed"] for f in failed_seeds({0: 94.2, 1: 95.3, 2: 96.9, 3: 94.4, 4: 22.0, 5: 94.9}, 10.0)]
        [4]
        >>> failed_seeds({0: 11.0, 1: 10.5, 2: 12.0}, 10.0)      # the whole rung is near chance: no single seed
        []
    """
    if chance is None or len(final_by_seed) < 2:
        return []
    out = []
    for seed, acc in sorted(final_by_seed.items()):
        others = float(np.median([v for s, v in final_by_seed.items() if s != seed]))
        if others <= chance + NEAR_CHANCE_PP:
            continue
        if acc <= chance + NEAR_CHANCE_PP or acc - chance < 0.5 * (others - chance):
            out.append({"seed": seed, "final_test": float(acc), "others_median": others})
    return out


def _protocol_differences(dataset: str, level, angles: str, epochs: int, config: dict,
                          assignment: dict | None, *, validation: bool = False,
                          tuned: bool = False) -> list[str]:
    """How this group's protocol differs from the published PyTorch runs (empty if it matches).

    Only rungs with a published number get a list: for the others there is nothing to compare.
    """
    if level is None or published_at_or_before(dataset, level, PUBLISHED_EPOCHS[-1]) is None:
        return []
    proto = PUBLISHED_TORCH_PROTOCOL
    diffs = []
    if level != 0 and angles != proto["angles"]:  # level 0 has no angles
        diffs.append(f"angles {angles} (published: {proto['angles']})")
    if epochs != proto["epochs"]:
        diffs.append(f"{plural(epochs, 'epoch')} (published: {proto['epochs']})")
    bs = config.get("batch_size")
    if isinstance(bs, (int, float)) and bs != proto["batch_size"]:
        diffs.append(f"batch {bs} (published: {proto['batch_size']})")
    lr = config.get("lr")
    if tuned:
        chosen = f"lr {lr:g} " if isinstance(lr, (int, float)) else "lr "
        diffs.append(f"{chosen}tuned on a validation split (published: fixed {proto['lr']:g})")
    elif isinstance(lr, (int, float)) and not math.isclose(lr, proto["lr"], rel_tol=1e-9):
        diffs.append(f"lr {lr:g} (published: {proto['lr']:g})")
    reps = config.get("n_reps")
    if (_uses_reuploading(level, assignment) and isinstance(reps, (int, float))
            and reps != proto["n_reps"]):
        diffs.append(f"{plural(reps, 're-upload')} (published: {proto['n_reps']})")
    scale, bias = config.get("output_scale"), config.get("bias_init")
    if _uses_reuploading(level, assignment) and (scale, bias) != (None, None) \
            and (scale, bias) != ("none", "normal"):
        diffs.append(f"readout: output scale {scale}, bias init {bias} (published: none, normal)")
    if config.get("max_train") is not None:
        diffs.append(f"max_train {config['max_train']} (published: full training set)")
    if config.get("max_test") is not None:
        diffs.append(f"max_test {config['max_test']} (published: full test set)")
    if validation:
        fraction = config.get("val_fraction")
        share = f"{fraction:.0%} of the" if isinstance(fraction, (int, float)) and 0 < fraction < 1 else "a"
        diffs.append(f"{share} training data held out for validation (published: none)")
    return diffs


def _unitarity_summary(records: list[dict]) -> dict | None:
    units = [rec["unitarity"] for rec in records if isinstance(rec.get("unitarity"), dict)]
    if not units:
        return None
    out = {}
    for key, agg in (("max_unitarity_error", max), ("min_state_norm", min),
                     ("max_state_norm", max)):
        vals = [u[key] for u in units
                if isinstance(u.get(key), (int, float)) and not isinstance(u.get(key), bool)]
        out[key] = float(agg(vals)) if vals else None
    # the largest error at any epoch, not only after the last one
    per_epoch = [v for rec in records for v in (rec.get("unitarity_errors") or [])
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if per_epoch:
        final = out["max_unitarity_error"]
        out["max_unitarity_error"] = max(float(max(per_epoch)), final if final is not None else float("-inf"))
    return out


def _dedupe_seeds(recs: list[dict], name: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Keep one record per seed; return ``(kept, duplicates, aliases)`` (lists of records).

    The kept record has the most epochs, then the label equal to the rung name, then the last
    path. Dropped records with the same label as the kept one are *duplicates* (a copied or repeated
    run); with another label they are *aliases* (the same model recorded under a second label,
    e.g. as its assignment). Counting either twice would inflate the number of seeds and shrink
    the standard deviation.
    """
    by_seed: dict[int, list[dict]] = {}
    for rec in recs:
        by_seed.setdefault(rec["seed"], []).append(rec)
    kept, duplicates, aliases = [], [], []
    for seed in sorted(by_seed):
        cands = sorted(by_seed[seed], key=lambda r: (len(r["test_accs"]), r["label"] == name,
                                                     r.get(PATH_KEY, "")))
        best = cands[-1]
        kept.append(best)
        for r in cands[:-1]:
            (duplicates if r["label"] == best["label"] else aliases).append(r)
    return kept, duplicates, aliases


def _best_val_point(rec: dict, epochs: int) -> tuple[int, float] | None:
    """``(best epoch, test accuracy there)`` by validation accuracy within the first ``epochs`` epochs.

    The record's ``best_epoch`` / ``test_acc_at_best`` are used when they fall within ``epochs``;
    otherwise the point is found from ``val_accs`` (first epoch of the highest accuracy).
    """
    best, at_best = rec.get("best_epoch"), rec.get("test_acc_at_best")
    if best is not None and at_best is not None and best <= epochs:
        return best, float(at_best)
    val = rec.get("val_accs")
    if isinstance(val, list) and len(val) >= epochs and epochs >= 1:
        idx = int(np.argmax(np.asarray(val[:epochs], dtype=float)))
        return idx + 1, float(rec["test_accs"][idx])
    return None


def _settings_sort_key(settings: dict) -> tuple:
    """Candidates in grid order: numbers by value (1e-05 before 0.0001), other values as text after them."""
    def rank(v):
        return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))

    return tuple((key, rank(v)) for key, v in sorted(settings.items()))


def _tuning_summary(recs: list[dict]) -> dict | None:
    """The learning-rate search of a group: chosen settings, budget, candidates averaged over seeds.

    A candidate's validation accuracies are those of the seeds its trials ran from (``per_seed``
    with ``--tune-seeds``); the runs of a rung trained with the settings of one tuning all carry
    its block, and identical blocks count once.
    """
    tunings = {r["seed"]: r["tuning"] for r in recs if isinstance(r.get("tuning"), dict)}
    if not tunings:
        return None
    chosen_by_seed = {seed: t.get("chosen") for seed, t in tunings.items()}
    budgets = [t.get("budget") for t in tunings.values()]
    cands: dict[str, dict] = {}
    # seeds trained with the settings of one tuning carry the same block: its trials count once
    distinct = {json.dumps(t, sort_keys=True): t for t in tunings.values()}
    for t in distinct.values():
        for c in t.get("candidates") or []:
            settings = c.get("settings") or {}
            key = json.dumps(settings, sort_keys=True)
            entry = cands.setdefault(key, {"settings": settings, "val_accs": [], "val_losses": []})
            per_seed = [e["val_acc"] for e in c.get("per_seed") or []
                        if isinstance(e, dict) and isinstance(e.get("val_acc"), (int, float))]
            if per_seed:  # a candidate trained from several seeds (--tune-seeds): each seed's score
                entry["val_accs"].extend(100.0 * v for v in per_seed)
            elif isinstance(c.get("val_acc"), (int, float)):
                entry["val_accs"].append(100.0 * c["val_acc"])
            if isinstance(c.get("val_loss"), (int, float)):
                entry["val_losses"].append(float(c["val_loss"]))
    candidates = []
    for entry in cands.values():
        m, s = _mean_sd_or_none(entry["val_accs"])
        lm, _ = _mean_sd_or_none(entry["val_losses"])
        candidates.append({"settings": entry["settings"], "val_acc_mean": m, "val_acc_sd": s,
                           "val_loss_mean": lm, "n": len(entry["val_accs"])})
    candidates.sort(key=lambda c: _settings_sort_key(c["settings"]))
    return {
        "split": _common(t.get("split") for t in tunings.values()),
        "metric": _common(t.get("metric") for t in tunings.values()),
        "chosen": _common(chosen_by_seed.values()),
        "chosen_by_seed": chosen_by_seed,
        "budget": _common(budgets),
        "budget_differs": not _same(budgets),
        "all_seeds": len(tunings) == len(recs),
        "candidates": candidates,
    }


def _lr_summary(recs: list[dict], tuning: dict | None) -> tuple[float | None, str]:
    """The learning rate of a group and its text (``"0.005 (tuned)"``, ``"0.0005"``, ...)."""
    if tuning is not None:
        lrs = sorted({c.get("lr") for c in tuning["chosen_by_seed"].values()
                      if isinstance(c, dict) and isinstance(c.get("lr"), (int, float))})
        if len(lrs) == 1:
            return float(lrs[0]), f"{lrs[0]:g} (tuned)"
        if lrs:
            return None, "/".join(f"{v:g}" for v in lrs) + " (tuned per seed)"
    lrs = sorted({(r.get("config") or {}).get("lr") for r in recs
                  if isinstance((r.get("config") or {}).get("lr"), (int, float))})
    if len(lrs) == 1:
        return float(lrs[0]), f"{lrs[0]:g}"
    if lrs:
        return None, "/".join(f"{v:g}" for v in lrs)
    return None, "—"


def _subsets(config: dict) -> dict:
    return {k: config.get(k) for k in ("max_train", "max_test", "classes") if config.get(k) is not None}


def _summarize_group(dataset: str, name: str, angles: str, recs: list[dict]) -> dict:
    recs, duplicates, alias_recs = _dedupe_seeds(recs, name)
    levels = {record_level(r) for r in recs}
    level = levels.pop() if len(levels) == 1 else None
    twins = {twin_target(r) for r in recs}
    twin_of = twins.pop() if len(twins) == 1 else None
    lengths = [len(r["test_accs"]) for r in recs]
    epochs = min(lengths)

    tests = np.array([r["test_accs"][:epochs] for r in recs], dtype=float) * 100.0
    final_test = tests[:, -1]
    best_test = tests.max(axis=1)
    curve_mean = tests.mean(axis=0)
    curve_sd = tests.std(axis=0, ddof=0)

    final_train = [100.0 * r["train_accs"][min(epochs, len(r["train_accs"])) - 1]
                   for r in recs if r["train_accs"]]
    train_mean, train_sd = _mean_sd_or_none(final_train)

    per_seed_time = [float(np.mean(r["epoch_times"][:epochs])) for r in recs if r.get("epoch_times")]
    sec_per_epoch = float(np.mean(per_seed_time)) if per_seed_time else None

    params = sorted({r["n_params"] for r in recs
                     if isinstance(r.get("n_params"), int) and not isinstance(r.get("n_params"), bool)})
    assignment = _common(r.get("assignment") for r in recs)

    # validation curves and the test accuracy at the best validation epoch
    vals = [r.get("val_accs") for r in recs]
    have_val = all(isinstance(v, list) and len(v) >= epochs for v in vals)
    if have_val:
        val = np.array([v[:epochs] for v in vals], dtype=float) * 100.0
        val_mean, val_sd = val.mean(axis=0), val.std(axis=0, ddof=0)
    best_points = [_best_val_point(r, epochs) for r in recs]
    have_best = all(p is not None for p in best_points)
    at_best_mean, at_best_sd = _mean_sd([100.0 * p[1] for p in best_points]) if have_best else (None, None)

    tuning = _tuning_summary(recs)
    lr, lr_text = _lr_summary(recs, tuning)
    tuned_keys = set()
    if tuning is not None and tuning["all_seeds"]:
        for chosen in tuning["chosen_by_seed"].values():
            tuned_keys.update((chosen or {}).keys())

    fm, fs = _mean_sd(final_test)
    bm, bs = _mean_sd(best_test)
    # the published numbers are for all classes of the dataset: a run on a subset (--classes) has none
    pub_level = level if not _common_config(recs).get("classes") else None
    pub = published_at_or_before(dataset, pub_level, epochs) if pub_level is not None else None
    pub_epoch, pub_mean, pub_sd = pub if pub is not None else (None, None, None)

    per_epoch = []
    for ep in PUBLISHED_EPOCHS:
        if ep > epochs:
            break
        m, s = float(curve_mean[ep - 1]), float(curve_sd[ep - 1])
        p = published_at(dataset, pub_level, ep) if pub_level is not None else None
        per_epoch.append({"epoch": ep, "mean": m, "sd": s,
                          "published_mean": p[0] if p else None, "published_sd": p[1] if p else None,
                          "delta_pp": (m - p[0]) if p else None})

    config = _common_config(recs)
    has_head = _has_readout_head(level, assignment)  # the readout options belong to the head and its twin
    classes = _common(num_classes(r) for r in recs)
    chance = 100.0 / classes if classes else None
    final_by_seed = {r["seed"]: float(v) for r, v in zip(recs, final_test)}
    failed = failed_seeds(final_by_seed, chance)
    kept = [v for s, v in final_by_seed.items() if s not in {f["seed"] for f in failed}]
    without_mean, without_sd = _mean_sd(kept) if failed and kept else (None, None)
    return {
        "dataset": dataset,
        "level": level,
        "label": name,
        "angles": angles,
        "assignment": assignment,
        "twin_of": twin_of,
        "aliases": sorted({r["label"] for r in recs + alias_recs} - {name}),
        "n_seeds": len(recs),
        "seeds": sorted(r["seed"] for r in recs),
        "paths": [r.get(PATH_KEY) for r in recs],
        "epochs": epochs,
        "epochs_differ": len(set(lengths)) > 1,
        "n_params": params[0] if len(params) == 1 else None,
        "n_params_all": params,
        "final_test_mean": fm,
        "final_test_sd": fs,
        "final_test_by_seed": final_by_seed,
        "failed_seeds": failed,
        "final_test_mean_without_failed": without_mean,
        "final_test_sd_without_failed": without_sd,
        "best_test_mean": bm,
        "best_test_sd": bs,
        "test_at_best_val_mean": at_best_mean,
        "test_at_best_val_sd": at_best_sd,
        "best_val_epochs": [p[0] for p in best_points] if have_best else None,
        "final_train_mean": train_mean,
        "final_train_sd": train_sd,
        "final_val_mean": float(val_mean[-1]) if have_val else None,
        "final_val_sd": float(val_sd[-1]) if have_val else None,
        "val_curve_mean": [float(v) for v in val_mean] if have_val else None,
        "val_curve_sd": [float(v) for v in val_sd] if have_val else None,
        "sec_per_epoch": sec_per_epoch,
        "curve_mean": [float(v) for v in curve_mean],
        "curve_sd": [float(v) for v in curve_sd],
        "published_epoch": pub_epoch,
        "published_mean": pub_mean,
        "published_sd": pub_sd,
        "delta_pp": (fm - pub_mean) if pub_mean is not None else None,
        "published_jax": published_jax(dataset, pub_level) if pub_level is not None else None,
        "per_epoch": per_epoch,
        "protocol_differences": _protocol_differences(
            dataset, pub_level, angles, epochs, config, assignment,
            validation=have_val, tuned=tuning is not None),
        "config_mismatch": _differing_config_keys(recs, ignore=tuned_keys),
        "subsets": _subsets(config),
        "lr": lr,
        "lr_text": lr_text,
        "tuning": tuning,
        "readout": _common(r.get("readout") for r in recs) if has_head else None,
        "readout_differs": has_head and not _same(r.get("readout") for r in recs),
        "solver": _common(r.get("solver") for r in recs),
        "solver_differs": not _same(r.get("solver") for r in recs),
        "num_classes": classes,
        "chance_pct": chance,
        "near_chance": chance is not None and fm <= chance + NEAR_CHANCE_PP,
        "unitarity": _unitarity_summary(recs),
        "duplicates_dropped": [str(r.get(PATH_KEY)) for r in duplicates],
        "aliases_dropped": [str(r.get(PATH_KEY)) for r in alias_recs],
        "_sort": sort_key(dataset, name, angles, level, assignment, twin_of, recs[0]),
    }


def _split_by_config(groups: dict) -> dict:
    """Runs of one rung under different settings (another ``config_hash``) are separate rows.

    Their names get the settings that differ, e.g. ``level 0 [lr=0.01]``, so that runs of two
    protocols written to one folder are never averaged together.
    """
    out = {}
    for (dataset, name, angles), recs in groups.items():
        by_hash: dict = {}
        for rec in recs:
            by_hash.setdefault(rec.get("config_hash"), []).append(rec)
        if len(by_hash) < 2:
            out[(dataset, name, angles)] = recs
            continue
        configs = {h: (rs[0].get("config") or {}) for h, rs in by_hash.items()}
        keys = sorted({k for c in configs.values() for k in c}
                      - {"seed", "epochs", "tuning", "threads", "device", "data_dir", "extra", "label"})
        differing = [k for k in keys if len({repr(c.get(k)) for c in configs.values()}) > 1]
        for h, rs in by_hash.items():
            tag = ", ".join(f"{k}={configs[h].get(k)}" for k in differing) or f"config {h}"
            out[(dataset, f"{name} [{tag}]", angles)] = rs
    return out


def summarize(records: list[dict]) -> list[dict]:
    """One row per (dataset, rung, angles) group of complete runs, statistics in percent.

    Each row has:

    * ``dataset``, ``level`` (the replacement level the rung equals, or None), ``label`` (the rung
      name), ``angles``, ``assignment``, ``twin_of`` (the rung a classical twin controls, or None),
      ``aliases`` (other labels the same model was recorded under);
    * ``n_seeds``, ``seeds`` (sorted), ``paths`` (record files);
    * ``epochs``: number of epochs every seed of the group completed; all per-run statistics are
      taken over these first ``epochs`` epochs, so seeds are compared at the same point;
      ``epochs_differ`` is True when the seeds completed different numbers of epochs;
    * ``n_params`` (int, or None when seeds disagree), ``n_params_all`` (sorted distinct values);
    * ``final_test_mean``/``final_test_sd``: test accuracy at epoch ``epochs``, mean and
      population sd (ddof=0) over seeds; ``final_test_by_seed``: ``{seed: accuracy}``;
      ``failed_seeds``: seeds that stayed near chance while the others trained (:func:`failed_seeds`;
      the mean and sd include them), ``final_test_mean_without_failed``/``_sd_without_failed``: the
      same statistics over the other seeds (None when no seed failed), for the notes only;
      ``best_test_mean``/``best_test_sd``: each seed's best test accuracy over the epochs (an
      optimistic number: it picks the epoch by the test set); ``final_train_mean``/``final_train_sd``;
    * ``test_at_best_val_mean``/``_sd``: test accuracy at each seed's best-validation epoch
      (``best_val_epochs``), None without validation data; ``final_val_mean``/``final_val_sd``,
      ``val_curve_mean``/``val_curve_sd``: validation accuracy (None without ``val_accs``);
    * ``lr`` (the common learning rate or None), ``lr_text`` (e.g. ``"0.005 (tuned)"``),
      ``tuning`` (None, or ``split``, ``metric``, ``chosen``, ``chosen_by_seed``, ``budget``,
      ``budget_differs``, ``all_seeds``, ``candidates`` with validation accuracy mean/sd);
    * ``readout`` (options of the re-uploading head or its twin, None for rungs without one), ``solver``
      (common values, None when absent or different; ``readout_differs``, ``solver_differs``);
    * ``num_classes``, ``chance_pct`` (100 / classes), ``near_chance`` (final test mean below
      chance + :data:`NEAR_CHANCE_PP`);
    * ``sec_per_epoch``: mean training seconds per epoch (None without ``epoch_times``);
    * ``curve_mean``/``curve_sd``: test accuracy per epoch (lists of length ``epochs``);
    * ``published_epoch``, ``published_mean``, ``published_sd``: the published PyTorch number at
      our final epoch if it is a published epoch (1, 5, 10, 20, 50), else at the largest published
      epoch below it; ``delta_pp`` = ours - published in percentage points (all None when there is
      no published number: not a level, a twin, or the dataset is digits);
    * ``published_jax``: the published real-angle JAX final accuracy (100 epochs) or None;
    * ``per_epoch``: for each published epoch we reached, ``{"epoch", "mean", "sd",
      "published_mean", "published_sd", "delta_pp"}``;
    * ``protocol_differences``: how our protocol differs from the published PyTorch runs;
      ``subsets``: ``max_train``/``max_test`` when used;
    * ``config_mismatch``: config keys whose values differ between seeds of the group (tuned
      settings excluded: they are shown as ``lr_text``);
    * ``duplicates_dropped`` / ``aliases_dropped``: record files ignored because another complete
      record of the rung has the same seed, under the same / another label;
    * ``unitarity``: worst ``max_unitarity_error`` / ``min_state_norm`` / ``max_state_norm`` over
      seeds, or None.

    Rows are ordered by dataset (digits, mnist, fashion-mnist, cifar10, then others), then rung
    (level 0, levels in order, assignments by number of quantum slots, each twin right after its
    rung), then angles. Runs that are not complete are left out (see :func:`incomplete_runs`).

    Example:
        >>> rows = summarize(load_records("runs/mnist"))                      # doctest: +SKIP
        >>> [(r["label"], r["n_seeds"], round(r["final_test_mean"], 2)) for r in rows]  # doctest: +SKIP
        [('level 0', 5, 92.3), ('level 1', 5, 92.34), ('level 2', 5, 96.92)]
    """
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for rec in records:
        if is_complete(rec):
            groups.setdefault((rec["dataset"], rung_name(rec), rec["angles"]), []).append(rec)
    groups = _split_by_config(groups)
    rows = [_summarize_group(ds, name, angles, recs) for (ds, name, angles), recs in groups.items()]
    rows.sort(key=lambda r: r["_sort"])
    for r in rows:
        del r["_sort"]
    return rows


def incomplete_runs(records: list[dict]) -> list[dict]:
    """Records whose status is not ``"complete"``, in table order then by seed.

    Example:
        >>> [(r["label"], r["status"]) for r in incomplete_runs(records)]    # doctest: +SKIP
        [('level 2', 'running')]
    """
    out = [r for r in records if not is_complete(r)]
    out.sort(key=lambda r: (record_sort_key(r), r["seed"], r.get(PATH_KEY, "")))
    return out
