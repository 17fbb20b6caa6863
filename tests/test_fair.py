"""Tests of the fair ladder: the validation split, equal-budget tuning and its resumption, twin rungs in
sweeps, and seed-parallel training against lone runs."""

from __future__ import annotations

import json

import pytest
import torch

import qcreep.train
from qcreep.config import TrainConfig
from qcreep.data import Split, load_dataset, validation_split
from qcreep.errors import ConfigError, QcreepError
from qcreep.records import record_path
from qcreep.stacked import fit_stacked
from qcreep.sweep import DataCache, LocalExecutor, data_key, plan, run_sweep
from qcreep.train import DivergedError, fit
from qcreep.tuning import DEFAULT_LR_GRID, TuningSpec, tuning_dir

TINY = dict(max_train=80, max_test=40, n_reps=2, batch_size=20)


class Log(list):
    def __call__(self, message):
        self.append(message)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", max_train=TINY["max_train"], max_test=TINY["max_test"])


# --------------------------------------------------------------------------------- validation split


def tagged(n_per_class=(30, 12, 7, 2)) -> Split:
    """A split whose images carry their index, so membership can be traced exactly."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(n_per_class)])
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))
    labels = labels[perm]
    x = torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1)
    return Split(x, labels)


def test_validation_split_partitions_train_and_is_stratified():
    train = tagged()
    fit_part, val = validation_split(train, 0.2, split_seed=0)
    fit_ids = set(fit_part.x.flatten().long().tolist())
    val_ids = set(val.x.flatten().long().tolist())
    assert not fit_ids & val_ids
    assert fit_ids | val_ids == set(range(len(train)))
    assert len(fit_ids) == len(fit_part) and len(val_ids) == len(val)
    # labels travel with their images
    assert torch.equal(train.y[val.x.flatten().long()], val.y)
    # per class: round(0.2 n), at least one, at most n - 1
    counts = torch.bincount(val.y, minlength=4).tolist()
    assert counts == [6, 2, 1, 1]
    # both parts keep the original order
    assert val.x.flatten().tolist() == sorted(val.x.flatten().tolist())
    assert fit_part.x.flatten().tolist() == sorted(fit_part.x.flatten().tolist())


def test_validation_split_is_reproducible_and_seeded():
    train = tagged()
    a = validation_split(train, 0.2, split_seed=0)[1]
    b = validation_split(train, 0.2, split_seed=0)[1]
    c = validation_split(train, 0.2, split_seed=1)[1]
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_validation_split_never_touches_test(digits):
    train, test = digits
    fit_part, val = validation_split(train, 0.1)
    assert len(fit_part) + len(val) == len(train)
    # every validation image is a training image; the test split is a different object, unchanged
    train_rows = {tuple(row.tolist()) for row in train.x.flatten(1)}
    assert all(tuple(row.tolist()) in train_rows for row in val.x.flatten(1))
    again_train, again_test = load_dataset("digits", max_train=TINY["max_train"], max_test=TINY["max_test"])
    assert torch.equal(again_test.x, test.x) and torch.equal(again_train.x, train.x)


def test_validation_split_errors():
    train = tagged()
    assert validation_split(train, 0.0) == (train, None)
    for bad in (1.0, -0.1, "0.1", True):
        with pytest.raises(QcreepError, match=r"validation fraction must be a number in \[0, 1\)"):
            validation_split(train, bad)
    # too small to be what was asked: a class of 1 example, or one per class far beyond the fraction
    with pytest.raises(QcreepError, match=r"^a stratified validation split of 32 training examples needs at least 2 "
                                          r"of each class \(one to fit, one to validate\), but 1 class\(es\) have 1 "
                                          r"\(class 2: 1\); use more training examples \(--max-train\), or "
                                          r"--val-fraction 0 \(no validation split; then also --no-tune\)$"):
        validation_split(tagged((20, 11, 1)), 0.1)
    with pytest.raises(QcreepError, match=r"^a validation split stratified by class takes at least one example of each "
                                          r"of the 2 classes: 2 of 5 training examples \(40%\), more than twice the "
                                          r"asked 10%; use more training examples \(at least about 10: --max-train\), "
                                          r"or --val-fraction 0.2 or more$"):
        validation_split(tagged((3, 2)), 0.1)
    assert len(validation_split(tagged((3, 2)), 0.2)[1]) == 2  # asked for: 40% is at most twice 20%
    assert len(validation_split(tagged((5, 5)), 0.1)[1]) == 2  # 20%: at the limit, accepted


def test_run_records_the_split_and_scores_validation(tmp_path, digits):
    cfg = TrainConfig(dataset="digits", level=0, epochs=2, **TINY).validate()
    rec = fit(cfg, tmp_path, progress=False, log=Log(), data=digits)
    # 8 examples per class: round(0.8) = 1 from each of the 10 classes
    assert rec["split"] == {"fit": 70, "validation": 10, "test": 40, "val_fraction": 0.1, "split_seed": 0}
    assert len(rec["val_accs"]) == 2 and all(0 <= a <= 1 for a in rec["val_accs"])
    # the validation accuracies are fractions of the 10 held-out images
    assert all(abs(a * 10 - round(a * 10)) < 1e-9 for a in rec["val_accs"])
    none = fit(TrainConfig(dataset="digits", level=0, epochs=1, val_fraction=0.0, **TINY).validate(), tmp_path / "n",
               progress=False, log=Log(), data=digits)
    assert none["val_accs"] == [] and none["best_epoch"] is None and none["split"]["validation"] == 0


# ------------------------------------------------------------------------------------------ tuning


def test_tuning_spec():
    spec = TuningSpec.default()
    assert spec.grid == {"lr": DEFAULT_LR_GRID} and spec.epochs == 10 and spec.n_trials == 9
    assert DEFAULT_LR_GRID[0] == 1e-5 and DEFAULT_LR_GRID[-1] == 1e-1
    two = TuningSpec.default(("lr", "output_scale"), epochs=3, lr_grid=[1e-3, 1e-2])
    assert two.n_trials == 4
    assert two.points()[1] == {"lr": 1e-3, "output_scale": "learned"}
    with pytest.raises(ConfigError, match=r"a tuned setting must be one of lr, output_scale"):
        TuningSpec.default(("momentum",))
    with pytest.raises(ConfigError, match=r"tuning epochs must be an integer >= 1"):
        TuningSpec.default(epochs=0)


def _sweep(tmp_path, digits, log, spec, levels=(0,), **kwargs):
    configs = plan(["digits"], levels=list(levels), seeds=[0, 1], epochs=2, **TINY)
    data = DataCache()
    data._raw[data_key(configs[0])] = digits
    return configs, run_sweep(configs, tmp_path, tuning=spec, progress=False, log=log, data=data, **kwargs)


def test_tuning_chooses_on_validation_and_blocks_every_record(tmp_path, digits):
    spec = TuningSpec.default(epochs=2, lr_grid=[1e-4, 1e-2])
    log = Log()
    configs, records = _sweep(tmp_path, digits, log, spec, levels=(0, 1))
    assert len(records) == 4
    for rec in records:
        tuning = rec["tuning"]
        assert tuning["split"] == "validation"
        assert tuning["budget"] == {"trials": 2, "epochs": 2, "seed": 0, "seeds": [0], "grid": {"lr": [1e-4, 1e-2]}}
        scores = {c["settings"]["lr"]: (c["val_acc"], c["val_loss"]) for c in tuning["candidates"]}
        best = max(scores, key=lambda lr: (scores[lr][0], -scores[lr][1]))
        assert tuning["chosen"] == {"lr": best} and rec["config"]["lr"] == best
        for cand in tuning["candidates"]:
            trial = json.loads((tuning_dir(tmp_path) / "records" / f"{cand['run_id']}.json").read_text())
            # the score is the trial's best validation accuracy; the test split played no part
            assert cand["val_acc"] == max(trial["val_accs"]) and cand["epochs"] == 2
    # the same budget for both rungs
    assert records[0]["tuning"]["budget"] == records[2]["tuning"]["budget"]
    assert sum("tuned on validation" in m for m in log) == 2
    assert len(list((tuning_dir(tmp_path) / "records").glob("*.json"))) == 4
    # reports read the final runs; the trials stay in tuning/ (readable on their own)
    from qcreep.report import load_records
    assert sorted(r["run_id"] for r in load_records(tmp_path)) == sorted(r["run_id"] for r in records)
    assert len(load_records(tuning_dir(tmp_path))) == 4


def test_tuning_trials_never_score_the_test_split(tmp_path, digits, monkeypatch):
    spec = TuningSpec.default(epochs=2, lr_grid=[1e-4, 1e-2])
    test_x = digits[1].x
    scored = []
    real = qcreep.train.evaluate

    def watching(model, x, *args, **kwargs):
        scored.append(x is test_x)
        return real(model, x, *args, **kwargs)

    monkeypatch.setattr(qcreep.train, "evaluate", watching)
    log = Log()
    _, records = _sweep(tmp_path, digits, log, spec)
    # 2 trials x 2 epochs score validation only; then 2 final seeds x 2 epochs score validation and test
    assert scored == [False] * 4 + [False, True] * 4
    for path in (tuning_dir(tmp_path) / "records").glob("*.json"):
        trial = json.loads(path.read_text())
        assert trial["test_accs"] == [] and trial["test_losses"] == [] and trial["test_acc_at_best"] is None
        assert len(trial["val_accs"]) == 2
    # the final runs still score the test split
    assert all(len(r["test_accs"]) == 2 and r["test_acc_at_best"] is not None for r in records)
    # the log says what each trial and the choice were scored on, never a test accuracy of a trial
    trial_lines = [m for m in log if m.startswith("[tuning")]
    assert len(trial_lines) == 2 and all("best val acc" in m and "test" not in m for m in trial_lines)
    chosen = next(m for m in log if "tuned on validation" in m)
    best = records[0]["tuning"]["chosen"]["lr"]
    score = next(c["val_acc"] for c in records[0]["tuning"]["candidates"] if c["settings"]["lr"] == best)
    assert f"lr={best:g} (best val acc {100 * score:.2f}%)" in chosen


def test_tuning_over_several_seeds_takes_the_mean_and_reuses_seed_0(tmp_path, digits):
    one = TuningSpec.default(epochs=2, lr_grid=[1e-3, 1e-2])
    _, first = _sweep(tmp_path, digits, Log(), one)
    seed0 = {c["settings"]["lr"]: c for c in first[0]["tuning"]["candidates"]}
    two = TuningSpec.default(epochs=2, lr_grid=[1e-3, 1e-2], seeds=2)
    assert two.seed_list == [0, 1] and two.budget()["seeds"] == [0, 1]
    stamps = {p: p.stat().st_mtime_ns for p in (tuning_dir(tmp_path) / "records").glob("*.json")}
    assert len(stamps) == 2
    log = Log()
    # the same folder: the seed-0 trials of the first tuning are reused, the seed-1 trials are new
    configs = plan(["digits"], levels=[0], seeds=[0, 1], epochs=2, **TINY)
    data = DataCache()
    data._raw[data_key(configs[0])] = digits
    from qcreep.sweep import tune_and_finalise
    finals = tune_and_finalise(configs, tmp_path, two, executor=LocalExecutor(), progress=False, log=log,
                               data=data, resume=True)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert len(list((tuning_dir(tmp_path) / "records").glob("*.json"))) == 4
    assert sum("seed 1] done" in m and m.startswith("[tuning") for m in log) == 2
    assert not any("seed 0] done" in m for m in log)
    block = finals[0].tuning
    assert block["budget"]["seeds"] == [0, 1]
    for cand in block["candidates"]:
        per_seed = cand["per_seed"]
        assert [p["seed"] for p in per_seed] == [0, 1]
        assert per_seed[0]["val_acc"] == seed0[cand["settings"]["lr"]]["val_acc"]
        assert cand["val_acc"] == pytest.approx((per_seed[0]["val_acc"] + per_seed[1]["val_acc"]) / 2)
        assert cand["val_loss"] == pytest.approx((per_seed[0]["val_loss"] + per_seed[1]["val_loss"]) / 2)
    best = max(block["candidates"], key=lambda c: (c["val_acc"], -c["val_loss"]))
    assert block["chosen"] == best["settings"]
    assert any("mean over seeds 0, 1" in m for m in log)
    # the per-rung tuning file records the seeds too, beside the one-seed file
    files = sorted(p.name for p in tuning_dir(tmp_path).glob("*.json"))
    assert len(files) == 2 and any(f.endswith("_seeds2.json") for f in files)
    saved = json.loads(next(p for p in tuning_dir(tmp_path).glob("*_seeds2.json")).read_text())
    assert saved["budget"]["seeds"] == [0, 1] and saved["chosen"] == block["chosen"]
    with pytest.raises(ConfigError, match=r"tune_seeds \(seeds per tuning trial\) must be an integer >= 1, got 0"):
        TuningSpec.default(seeds=0)


def test_tuning_without_a_validation_split_is_refused_before_anything_is_written(tmp_path, digits):
    spec = TuningSpec.default(epochs=1, lr_grid=[1e-3, 1e-2])
    configs = plan(["digits"], levels=[0], seeds=[0], epochs=1, val_fraction=0.0, **TINY)
    with pytest.raises(ConfigError, match=r"^tuning chooses each rung's settings on the validation split, but "
                                          r"val_fraction is 0 \(no validation split\); use --val-fraction > 0 "
                                          r"\(default 0.1\), or --no-tune"):
        run_sweep(configs, tmp_path / "out", tuning=spec, progress=False, log=Log())
    assert not (tmp_path / "out").exists()


def test_interrupted_tuning_resumes_and_reuses_finished_trials(tmp_path, digits):
    spec = TuningSpec.default(epochs=2, lr_grid=[1e-4, 1e-3, 1e-2])
    base = TrainConfig(dataset="digits", level=0, epochs=2, **TINY).validate()
    from qcreep.tuning import trial_configs
    trials = trial_configs(base, spec)
    # the interruption: trial 0 finished, trial 1 stopped after its first epoch, trial 2 never started
    fit(trials[0], tuning_dir(tmp_path), progress=False, log=Log(), data=digits)
    fit(trials[1], tuning_dir(tmp_path), progress=False, log=Log(), data=digits, stop_after=1)
    finished = record_path(tuning_dir(tmp_path), trials[0])
    stamp = finished.stat().st_mtime_ns
    log = Log()
    _, records = _sweep(tmp_path, digits, log, spec)
    assert finished.stat().st_mtime_ns == stamp
    assert "1 tuning trial already complete, skipped" in log
    assert not any("lr 0.0001" in m and "done" in m for m in log)
    assert any("resuming after epoch 1" in m for m in log)
    # an uninterrupted tuning chooses the same and scores the same
    _, fresh = _sweep(tmp_path / "fresh", digits, Log(), spec)
    assert records[0]["tuning"]["chosen"] == fresh[0]["tuning"]["chosen"]
    assert [c["val_acc"] for c in records[0]["tuning"]["candidates"]] == \
           [c["val_acc"] for c in fresh[0]["tuning"]["candidates"]]


def test_diverged_trial_is_kept_and_loses(tmp_path, digits, monkeypatch):
    real = qcreep.train.train_epoch

    def diverging(model, optimizer, train, config, *args, **kwargs):
        if config.lr == 1e-2:
            raise DivergedError("training diverged: loss is nan at epoch 1; try a smaller --lr")
        return real(model, optimizer, train, config, *args, **kwargs)

    monkeypatch.setattr(qcreep.train, "train_epoch", diverging)
    spec = TuningSpec.default(epochs=1, lr_grid=[1e-3, 1e-2])
    log = Log()
    _, records = _sweep(tmp_path, digits, log, spec)
    tuning = records[0]["tuning"]
    assert tuning["chosen"] == {"lr": 1e-3}
    assert [c["status"] for c in tuning["candidates"]] == ["complete", "diverged"]
    assert any("diverged; kept as a failed trial" in m for m in log)
    # resuming does not train the diverged trial again
    log = Log()
    _sweep(tmp_path, digits, log, spec)
    assert not any("diverged; kept" in m for m in log)


# ---------------------------------------------------------------------------------------- twins


def test_plan_puts_each_twin_after_its_rung():
    configs = plan(["digits"], levels=[0, 1, 2], seeds=[0], twins=True, epochs=1)
    assert [c.rung_label for c in configs] == ["level 0", "level 1", "level 1 twin", "level 2", "level 2 twin"]
    twin = configs[-1]
    assert twin.twin_of == "level 2" and twin.level is None
    assert twin.assignment == {"conv1": "conv3x3_twin", "conv2": "conv3x3_twin", "head": "dense_twin"}
    assert twin.run_id.startswith("digits_level2twin_real_seed0_")
    # a twin is classical: one twin, in real mode, also when both angle modes are planned
    both = plan(["digits"], levels=[2], seeds=[0], angles=["real", "complex"], twins=True, epochs=1)
    assert [(c.rung_label, c.angles) for c in both] == [("level 2", "real"), ("level 2", "complex"),
                                                         ("level 2 twin", "real")]


# -------------------------------------------------------------------------------- seed-parallel


@pytest.mark.parametrize("level", [0, 1, 2])
def test_stacked_seeds_match_lone_runs(tmp_path, digits, level):
    configs = [TrainConfig(dataset="digits", level=level, seed=s, epochs=2, lr=5e-3, dtype="float64",
                           **TINY).validate() for s in (0, 1, 2)]
    lone = [fit(c, tmp_path / "lone", progress=False, log=Log(), data=digits) for c in configs]
    stacked = fit_stacked(configs, tmp_path / "stacked", progress=False, log=Log(), data=digits)
    for a, b in zip(lone, stacked):
        assert a["run_id"] == b["run_id"] and b["status"] == "complete"
        for key in ("train_losses", "val_losses", "test_losses"):
            assert b[key] == pytest.approx(a[key], rel=1e-9, abs=1e-10), key
        # exactly: in float64 the logits agree to about 1e-12, and a prediction flips only at a tie
        # that close (a chance of order 1e-10 over these 120 images and 2 epochs)
        for key in ("train_accs", "val_accs", "test_accs"):
            assert b[key] == a[key], key
    # the stacked checkpoints are lone checkpoints: a stacked run resumes alone with more epochs
    more = configs[1].replace(epochs=3)
    lone_more = fit(more, tmp_path / "lone", resume=True, progress=False, log=Log(), data=digits)
    stacked_more = fit(more, tmp_path / "stacked", resume=True, progress=False, log=Log(), data=digits)
    assert stacked_more["test_losses"] == pytest.approx(lone_more["test_losses"], rel=1e-9, abs=1e-10)


def test_stacked_first_epoch_steps_match_in_float32(tmp_path, digits):
    configs = [TrainConfig(dataset="digits", level=2, seed=s, epochs=1, lr=5e-3, **TINY).validate()
               for s in (0, 1)]
    lone = [fit(c, tmp_path / "lone", progress=False, log=Log(), data=digits) for c in configs]
    stacked = fit_stacked(configs, tmp_path / "stacked", progress=False, log=Log(), data=digits)
    for a, b in zip(lone, stacked):
        assert b["train_losses"] == pytest.approx(a["train_losses"], rel=1e-5)
        assert b["test_losses"] == pytest.approx(a["test_losses"], rel=1e-4)


def test_stacked_executor_and_errors(tmp_path, digits):
    configs = plan(["digits"], levels=[0], seeds=[0, 1, 2], epochs=1, **TINY)
    data = DataCache()
    data._raw[data_key(configs[0])] = digits
    records = run_sweep(configs, tmp_path, executor=LocalExecutor(seed_parallel=2), progress=False, log=Log(),
                        data=data)
    assert [r["seed"] for r in records] == [0, 1, 2] and all(r["status"] == "complete" for r in records)
    with pytest.raises(ConfigError, match=r"seed-parallel runs must differ only by seed"):
        fit_stacked([configs[0], configs[0].replace(lr=1e-2, seed=1)], tmp_path / "x", log=Log(), data=digits)
    with pytest.raises(ConfigError, match=r"seed_parallel must be an integer >= 1"):
        LocalExecutor(seed_parallel=0)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 2e-5)])
def test_stacked_per_step_losses_match_lone_over_the_first_epoch(digits, dtype, tol):
    import torch.nn.functional as F

    from qcreep.stacked import StackedModel
    from qcreep.train import build_run_model, epoch_permutation, prepare_data

    configs = [TrainConfig(dataset="digits", level=2, seed=s, epochs=1, lr=5e-3, dtype=dtype, **TINY).validate()
               for s in (0, 1, 2)]
    fit_part = prepare_data(configs[0], digits).fit
    torch_dtype = getattr(torch, dtype)
    lone_models = [build_run_model(c) for c in configs]
    stacked = StackedModel([build_run_model(c) for c in configs])
    lone_opts = [torch.optim.Adam(m.parameters(), lr=5e-3) for m in lone_models]
    stacked_opt = torch.optim.Adam(list(stacked.params.values()), lr=5e-3)
    perms = [epoch_permutation(len(fit_part), c.seed, 0) for c in configs]
    steps = 0
    for start in range(0, len(fit_part), 20):
        idx = [p[start:start + 20] for p in perms]
        lone_losses = []
        for model, opt, i in zip(lone_models, lone_opts, idx):
            loss = F.cross_entropy(model(fit_part.x[i].to(torch_dtype)), fit_part.y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            lone_losses.append(float(loss.detach()))
        xb = torch.stack([fit_part.x[i] for i in idx]).to(torch_dtype)
        yb = torch.stack([fit_part.y[i] for i in idx])
        out = stacked(xb)
        losses = F.cross_entropy(out.flatten(0, 1), yb.flatten(), reduction="none").view(3, -1).mean(1)
        stacked_opt.zero_grad()
        losses.sum().backward()
        stacked_opt.step()
        assert losses.tolist() == pytest.approx(lone_losses, rel=tol, abs=tol), f"step {steps}"
        steps += 1
    assert steps == 4  # 70 fitted examples in batches of 20
