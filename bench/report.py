"""Render bench/results/*.json as the benchmark tables of docs/benchmarks.md (between the BENCH markers).

    .venv/bin/python bench/report.py          # rewrite docs/benchmarks.md in place
    .venv/bin/python bench/report.py --print  # print the Markdown only

Only figures present in the JSON files are shown; a missing file is listed as "not run".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
START, END = "<!-- BENCH:START -->", "<!-- BENCH:END -->"


def load(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, dict) and "mean" in v:
        sd = v.get("sd") or 0.0
        return f"{v['mean']:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd else "")
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ok(flag: Any) -> str:
    return "met" if flag is True else ("**missed**" if flag is False else "–")


def quality(name: str = "quality", title: str = "Quality") -> list[str]:
    rows = load(name)
    if not rows:
        return [f"{title} (`bench/quality.py`): not run."]
    seeds = {r.get("seeds") for r in rows}
    layers = rows[0].get("train_layers")
    what = "all layers" if layers is None and "train_layers" in rows[0] else \
        f"the top {layers or '?'} layers"
    epochs = rows[0].get("epochs")
    epochs = f"{epochs:g}" if isinstance(epochs, (int, float)) else "?"
    out = [f"**{title}** (`bench/quality.py`, Home Depot protocol, profile `small`, "
           f"{rows[0].get('tuning', '?')} tuning of {what} of MiniLM, {epochs} epoch{'' if epochs == '1' else 's'}, seeds per row: "
           f"{', '.join(str(s) for s in sorted(seeds))}; mean ± sd where more than one seed):", "",
           "| row | ID macro-F1 | OOD macro-F1 | gap | ID ECE | OOD ECE | QWK | irrelevant F1 | over-recall | wall s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['name']}` | " + " | ".join(num(r.get(k), 0 if k == "wall_s" else 3) for k in (
            "id_macro_f1", "ood_macro_f1", "gap", "id_ece", "ood_ece", "qwk", "irrelevant_f1", "over_recall",
            "wall_s")) + " |")
    return out


def simple(title: str, name: str, fields: list[tuple[str, str]], note: str = "") -> list[str]:
    data = load(name)
    if data is None:
        return [f"**{title}** (`bench/{name}.py`): not run."]
    parts = []
    for label, path in fields:
        v: Any = data
        for key in path.split("."):
            v = v.get(key) if isinstance(v, dict) else None
        parts.append(f"{label} {num(v, 2)}")
    line = f"**{title}** (`bench/{name}.py`): " + "; ".join(parts)
    if "meets_targets" in data:
        line += f" — targets {ok(data['meets_targets'])}"
    return [line + (f". {note}" if note else "")]


def ablation() -> list[str]:
    rows = load("loss_ablation")
    if not rows:
        return ["**Loss ablation** (`bench/loss_ablation.py`): not run."]
    out = ["**Loss ablation** (`bench/loss_ablation.py`: grade head on frozen MiniLM features of the 6,000 "
           "train pairs, scored on `val_id`, 3 seeds; this picked the DaRL loss's forms and weights):", "",
           "| loss | macro-F1 | ECE | QWK | irrelevant F1 | over-recall |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['variant']} | " + " | ".join(num(r.get(k)) for k in (
            "macro_f1", "ece", "qwk", "f1_irrelevant", "over_recall")) + " |")
    return out


def ood() -> list[str]:
    data = load("ood")
    if data is None:
        return ["**OOD detection** (`bench/ood.py`): not run."]
    sources = {"pretrained": data.get("detectors", {})}
    for name, sec in (data.get("finetuned") or {}).items():
        sources[f"fine-tuned `{name}`"] = sec.get("detectors", {})
    names = list(dict.fromkeys(k for src in sources.values() for k in src))
    out = [f"**OOD detection** (`bench/ood.py`, test_id vs test_ood, AUROC / FPR@95; feature and ensemble "
           f"weights chosen on val_id vs pool_ood, pretrained choice `{data.get('feature')}`; `ensemble` = "
           f"validation-tuned weights, `ensemble_equal` = all members at equal weights, "
           f"`default_ensemble_last_layer` = the product's default, kNN + knn_ratio at equal weights on the "
           f"last layer, no choice made on labels; `knn_ratio`'s background is the unlabelled pool):", "",
           "| detector | " + " | ".join(sources) + " |", "|---" * (len(sources) + 1) + "|"]
    for name in names:
        cells = []
        for src in sources.values():
            m = src.get(name)
            cells.append(f"{m['auroc']:.3f} / {m['fpr95']:.3f}" if m else "–")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    share = data.get("selected_ood_share") or {}
    if share:
        out += ["", "Share of `pool_ood` pairs in a 1,000-pair selection from the mixed pool (50% OOD): "
                f"DASA (validation-tuned) {num(share.get('dasa', {}).get('all'), 2)}, DASA default config "
                f"{num(share.get('dasa_default_config', {}).get('all'), 2)}, random "
                f"{num(share.get('random', {}).get('mean_of_10_seeds'), 2)}, max entropy "
                f"{num(share.get('max_entropy', {}).get('share'), 2)}."]
    return out


def significance(name: str = "significance", title: str = "Beyond test noise?") -> list[str]:
    data = load(name)
    if not data:
        return [f"**{title}** (`bench/significance.py`): not run."]
    parts = []
    for split, label in (("id", "test_id"), ("ood", "test_ood")):
        r = data.get(split)
        if not r:
            continue
        reach = ", ".join(f"≥ {float(t) * 100:+g} points in {v:.0%}" for t, v in r.get("share_at_least", {}).items())
        parts.append(f"{label} {r['difference'] * 100:+.1f} points (95% interval {r['low'] * 100:+.1f} … "
                     f"{r['high'] * 100:+.1f}; {reach} of resamples)")
    return [f"**{title}** (`bench/significance.py`: `{data['b']}` − `{data['a']}` macro-F1, each the mean "
            f"of seeds {', '.join(map(str, data['seeds']))}, paired bootstrap over test queries, "
            f"{data['id']['n_boot']} resamples): " + "; ".join(parts)]


def budget() -> list[str]:
    rows = load("budget")
    if not rows:
        return ["**Label budget** (`bench/budget.py`): not run."]
    budgets = sorted({r["budget"] for r in rows if r["budget"] > 0})
    by = {(r["method"], r["budget"]): r for r in rows}
    seeds = sorted({r["seeds"] for r in rows})
    out = ["**Label budget** (`bench/budget.py`: the `dasa` stage after `lp_ft_wi` with N pool labels, picked by "
           f"DASA or at random; seeds: {', '.join(map(str, seeds))}; OOD macro-F1, in brackets its lift in points over "
           f"`lp_ft_wi` at {num(by.get(('none', 0), {}).get('ood_macro_f1'))}; then ID macro-F1, "
           f"`lp_ft_wi` {num(by.get(('none', 0), {}).get('id_macro_f1'))}):", "",
           "| picked by | " + " | ".join(f"{b:,} labels" for b in budgets) + " |",
           "|---|" + "---|" * len(budgets)]
    for method in ("dasa", "random"):
        cells = []
        for b in budgets:
            r = by.get((method, b))
            cells.append("–" if r is None else f"{num(r['ood_macro_f1'])} ({round(r['ood_lift']['mean'] * 100, 1) + 0.0:+.1f}) · "
                                               f"ID {r['id_macro_f1']['mean']:.3f}")
        out.append(f"| {'DASA' if method == 'dasa' else 'random'} | " + " | ".join(cells) + " |")
    return out


def post_steps(name: str, script: str, title: str, what: str) -> list[str]:
    """A paired table of stage steps applied to finished checkpoints (offsets, blend), and the paired lifts."""
    res = load(f"variants/{name}")
    if not res:
        return [f"{title} (`bench/{script}`): not run."]
    bases = [f"`{r['name']}`" for r in res["rows"] if "+" not in r["name"]]
    listed = " and ".join(bases) if len(bases) < 3 else ", ".join(bases[:-1]) + " and " + bases[-1]
    out = [f"**{title}** (`bench/{script}`: the same {listed} checkpoints {what}, "
           f"seeds {', '.join(map(str, res['seeds']))}; mean ± sd):", "",
           "| row | ID macro-F1 | OOD macro-F1 | ID ECE | OOD ECE | irrelevant F1 | OOD irrelevant F1 | kept on |",
           "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        runs = [x for x in res["runs"] if x["name"] == r["name"]]
        kept = []
        for key, label in (("kept", "rule"), ("offsets_kept", "offsets"), ("zero_shot_kept", "blend")):
            fits = [x[key] for x in runs if key in x]
            if fits:
                kept.append(f"{label} {sum(fits)}/{len(fits)}")
        out.append(f"| `{r['name']}` | " + " | ".join(num(r.get(k)) for k in (
            "id_macro_f1", "ood_macro_f1", "id_ece", "ood_ece", "irrelevant_f1", "ood_irrelevant_f1"))
            + f" | {', '.join(kept) or '–'} |")
    return out


def lifts(name: str, title: str, keep: tuple[str, ...]) -> list[str]:
    """Paired per-seed differences between rows of a post-steps run (``b - a``: mean ± sd over seeds)."""
    res = load(f"variants/{name}")
    if not res or not res.get("lifts"):
        return []
    chosen = [(k, v) for k, v in res["lifts"].items() if k in keep]
    if not chosen:
        return []
    out = [f"{title}:", "", "| difference (paired by seed) | ID macro-F1 | OOD macro-F1 |", "|---|---|---|"]
    out += [f"| `{k}` | {num(v['id_macro_f1'])} | {num(v['ood_macro_f1'])} |" for k, v in chosen]
    return out


def zero_shot_rows() -> list[str]:
    keep = ("dasa_1000 - lp_ft_wi", "random_1000 - lp_ft_wi", "dasa_1000+zs+offsets - lp_ft_wi+zs+offsets",
            "random_1000+zs+offsets - lp_ft_wi+zs+offsets", "dpo - ce", "dpo+zs+offsets - ce+zs+offsets",
            "lp_ft_wi+zs+offsets - ce+zs+offsets")
    table = post_steps("zero_shot_rows", "zero_shot.py --rows ...", "Zero-shot blend on every pipeline row",
                       "with and without the blend and offsets, as above")
    more = lifts("zero_shot_rows", "Does DASA still lift OOD once every model gets the blend "
                                "and offsets? Lifts over the row each continues from, paired by seed", keep)
    return table + ([""] + more if more else [])


def load_span(load: dict | None) -> str:
    if not load:
        return "not recorded"
    return f"{load['start'][0]:.1f} at the start, {load['end'][0]:.1f} at the end"


def blend_cost() -> list[str]:
    res = load("blend_cost")
    if not res:
        return ["Blend cost (`bench/blend_cost.py`): not run."]
    out = [f"**Blend cost** (`bench/blend_cost.py`: scoring {res['pairs']:,} pool pairs "
           f"({res['distinct_texts']:,} distinct texts) with MiniLM on {res['threads']} CPU thread(s), "
           f"median of {res['repeats']}; 1-min load average {load_span(res.get('load'))}):", "",
           "| model | pairs/s plain | with blend, cold cache | slowdown | warm cache | slowdown | frozen copy MB |",
           "|---|---|---|---|---|---|---|"]
    for kind in ("full", "lora"):
        r = res.get(kind)
        if r:
            out.append(f"| {kind} | {r['pairs_per_s_plain']:.0f} | {r['pairs_per_s_blend_cold']:.0f} | "
                       f"{r['slowdown_cold']:.2f}× | {r['pairs_per_s_blend_warm']:.0f} | {r['slowdown_warm']:.2f}× | "
                       f"{r['frozen_copy_mb']:.0f} |")
    return out


def zero_shot() -> list[str]:
    return post_steps("zero_shot", "zero_shot.py", "Zero-shot blend",
                      "with the pretrained similarity blended in (`+zs`), the decision offsets (`+offsets`), both, "
                      "or neither; every variant then gets the ECE temperature")


def label_noise() -> list[str]:
    res = load("label_noise")
    if not res:
        return ["Label noise (`bench/label_noise.py`): not run."]
    out = [f"**Label noise** (`bench/label_noise.py`: {res['protocol']}; 1-min load average "
           f"{load_span(res.get('load'))}). Detection AUROC of the injected flips, and precision at N = number "
           "flipped; `pair` is the product's label check, `biencoder` a candidate feature:", "",
           "| features | noise | ordinal (ours) | cleanlab default | training loss | random | P@N ours | P@N cleanlab |",
           "|---|---|---|---|---|---|---|---|"]
    for feature, by in res["injected"].items():
        for key, d in by.items():
            out.append(f"| {feature} | {key.replace('_', ' ')}% | {num(d['ordinal']['auroc'])} | "
                       f"{num(d['cleanlab']['auroc'])} | {num(d['loss']['auroc'])} | {num(d['random']['auroc'])} | "
                       f"{num(d['ordinal']['precision_at_n'])} | {num(d['cleanlab']['precision_at_n'])} |")
    target = res["targets"]["auroc_adjacent_10_ge_0.85"]
    out += ["", "Target AUROC ≥ 0.85 at 10% adjacent noise: "
            + ", ".join(f"{f} {ok(v)}" for f, v in target.items()) + "."]
    for feature, r in res["real_noise"].items():
        base = r["base_rate"]
        out.append("")
        out.append(f"Real noise ({feature}, nothing injected), top {r['ordinal']['top']:,} suspects: rater mean "
                   f"decided by rounding {r['ordinal']['rounding_decided_share']:.1%} (base "
                   f"{base['rounding_decided_share']:.1%}; cleanlab {r['cleanlab']['rounding_decided_share']:.1%}), "
                   f"raters disagreed {r['ordinal']['raters_disagreed_share']:.1%} (base "
                   f"{base['raters_disagreed_share']:.1%}).")
    return out


def label_noise_refit() -> list[str]:
    res = load("label_noise_refit")
    if not res:
        return ["Label noise, refit option (`bench/label_noise.py --refit`): not run."]
    out = [f"**Label noise, the refit option** (`bench/label_noise.py --refit`: {res['protocol']}). Detection AUROC "
           "(P@N) of the injected flips; on the untouched grades (`real`), the share of the top suspects whose rater "
           "mean the rounding decided:", "",
           "| noise | seeds | ordinal (ours) | cleanlab default | plain fine-tune's training loss | random | refit s |",
           "|---|---|---|---|---|---|---|"]
    names = ("ordinal", "cleanlab", "finetune_training_loss", "random")
    for key, d in res["settings"].items():
        if key == "real":
            continue
        cells = [f"{num(d[n]['auroc']['mean'])} ({num(d[n]['precision_at_n']['mean'])})" for n in names]
        out.append(f"| {key.replace('_', ' ')}% | {len(d['seeds'])} | " + " | ".join(cells) + f" | {d['refit_seconds']:.0f} |")
    real = res["settings"].get("real")
    if real:
        base = real["base_rate"]["rounding_decided_share"]["mean"]
        out += ["", "Real noise, top 1,000 suspects, rounding decided (base "
                f"{base:.1%}): " + ", ".join(f"{n} {real[n]['rounding_decided_share']['mean']:.1%}" for n in names)
                + "; raters disagreed (base "
                f"{real['base_rate']['raters_disagreed_share']['mean']:.1%}): "
                + ", ".join(f"{n} {real[n]['raters_disagreed_share']['mean']:.1%}" for n in names) + "."]
    return out


def few_queries() -> list[str]:
    res = load("few_queries")
    if not res:
        return ["Few-queries flag (`bench/few_queries.py`): not run."]
    out = [f"**Where a figure becomes too thin** (`bench/few_queries.py`: {res['draws']} random query subsets per "
           "count from each Home Depot test split, scored by the robustness run's variant-a seed-0 `ce` and pipeline "
           "models): median half-width of the 95% query-bootstrap interval of the pipeline's macro-F1, and how often "
           "the subset ranks pipeline and `ce` the wrong way round:", "",
           "| queries | half-width test_id | test_ood | wrong ranking test_id | test_ood |", "|---|---|---|---|---|"]
    by = {split: {r["queries"]: r for r in d["by_count"]} for split, d in res["splits"].items()}
    for n in by["test_id"]:
        a, b = by["test_id"][n], by["test_ood"][n]
        out.append(f"| {n} | {num(a['median_half_width'])} | {num(b['median_half_width'])} | "
                   f"{num(a['wrong_ranking_share'], 2)} | {num(b['wrong_ranking_share'], 2)} |")
    out += ["", f"Threshold (first count within ±{res['half_width']:.2f} on both splits): {res['threshold']} queries, "
            "the versions table's and Gap page's `FEW_QUERIES`."]
    return out


def ce_stability() -> list[str]:
    res = load("ce_stability")
    if not res:
        return []
    out = ["**The `ce` baseline's lr at the default profile** (`bench/ce_stability.py`: full tuning of every layer, "
           "2 epochs, on the robustness runs' data; `ce_plus_labels` adds the LoRA chain's DASA labels). A final "
           "training loss near ln 3 = 1.099 means the model learned nothing; validation macro-F1 is what an lr may "
           "be chosen on, the test figures are reported only:", "",
           "| variant | recipe | seed | lr | pairs | final loss | val macro-F1 | val predicted shares | "
           "test_id / test_ood macro-F1 | ECE id / ood |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(res["rows"], key=lambda r: (r.get("variant", "a"), r["recipe"], r["seed"], -r["lr"])):
        out.append(f"| {r.get('variant', 'a')} | `{r['recipe']}` | {r['seed']} | {r['lr']:g} | {r['train_pairs']:,} | "
                   f"{num(r['final_train_loss'])} | {num(r['val_macro_f1'])} | "
                   f"{' / '.join(f'{x:.2f}' for x in r['val_predicted_share'])} | "
                   f"{num(r['id_macro_f1'])} / {num(r['ood_macro_f1'])} | {num(r['id_ece'])} / {num(r['ood_ece'])} |")
    return out


def val_draw() -> list[str]:
    res = load("val_draw")
    if not res or "by_share" not in res:
        return []
    out = [f"**How large a drawn validation set?** ({res['protocol']}) Means over seeds; the `60 queries given` rows "
           "start from a 60-query val split (100 pairs) that is used as given (topped up below 8 queries, the rule "
           "before) or topped up (below 128, the rule since):", "",
           "| val split given, share of training queries drawn | seeds | train pairs | val queries | pool_id macro-F1 | "
           "pool_ood macro-F1 | pool_id ECE | pool_ood ECE |", "|---|---|---|---|---|---|---|---|"]

    def label(key: str) -> str:
        share, _, rest = key.partition("_given")
        if not rest:
            return f"5 queries, {float(share):.0%}"
        given, _, below = rest.partition("_min")
        if int(below) <= int(given):
            return f"{given} queries given, used as given (the rule before)"
        return f"{given} queries given, topped up by {float(share):.0%} (below {below} queries: the rule since)"
    for share, r in res["by_share"].items():
        out.append(f"| {label(share)} | {r['seeds']} | {r['train_pairs']:,.0f} | {r['val_queries']:.0f} | "
                   f"{num(r['pool_id_macro_f1'])} | {num(r['pool_ood_macro_f1'])} | {num(r['pool_id_ece'])} | "
                   f"{num(r['pool_ood_ece'])} |")
    return out


def temperature_guard() -> list[str]:
    res = load("temperature_guard")
    if not res or "rules_fresh" not in res:
        return []
    out = ["**Which temperature rule?** (`bench/temperature_guard.py`: mean ECE on up to 1,500 unpicked pool_id and "
           "1,500 pool_ood pairs per pipeline run, never the tests. r2: every T must win out of fold and not worsen "
           "the held-out DASA labels; r3 (the default): a softening T is kept once validation has 128 queries; r5: "
           "r3 capped at T ≤ 2; r6: T fitted on validation and the held-out labels together. `chose r3`: the runs "
           "r3 was chosen on; `fresh`: runs made since, which no rule was chosen on):", "",
           "| runs | profile | n | " + " | ".join(["r2", "r3", "r5", "r6", "always", "never"]) + " |",
           "|---|---|---|" + "---|" * 6]
    for title, key in (("chose r3", "rules"), ("fresh", "rules_fresh")):
        for profile, r in res[key].items():
            cells = [f"{num(r[k]['pool_id'])} / {num(r[k]['pool_ood'])}" if k in r else "–"
                     for k in ("r2", "r3", "r5", "r6", "always", "never")]
            out.append(f"| {title} | {profile} | {r['runs']} | " + " | ".join(cells) + " |")
    return out


def robustness(name: str = "robustness") -> list[str]:
    res = load(name)
    if not res:
        return [f"Robustness (`bench/robustness.py`, {name}): not run."]
    out = [f"**Robustness** (`bench/robustness.py`, profile `{res['profile']}`; Home Depot variants: "
           + "; ".join(f"{k}. {v}" for k, v in res["variants"].items())
           + "). `pipeline` is the product's default chain, `no_posthoc` the same training without any step fitted "
           "after it, `ce` the user's baseline, `ce_plus_labels` that baseline given the same DASA labels; "
           "vs-ce columns are paired by seed:", "",
           "| variant | pipeline tuning | recipe | seeds | ID macro-F1 | OOD macro-F1 | ID ECE | OOD ECE | ID vs ce | "
           "OOD vs ce | targets |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["table"]:
        t = r.get("targets")
        flags = "–" if not t else f"not below ce {ok(t['not_below_ce'])}, ECE {ok(t['ece_ok'])}"
        out.append(f"| {r['variant']} | {r['pipeline_tuning']} | `{r['recipe']}` | {len(r['seeds'])} | "
                   + " | ".join(num(r.get(k)) for k in ("id_macro_f1", "ood_macro_f1", "id_ece", "ood_ece",
                                                        "id_vs_ce", "ood_vs_ce")) + f" | {flags} |")
    for tuning, o in res.get("overall", {}).items():
        out += ["", f"Across variants {', '.join(o['variants'])} ({tuning}): pipeline vs ce ID "
                f"{o['mean_id_vs_ce']:+.3f}, OOD {o['mean_ood_vs_ce']:+.3f} (target +0.02 / +0.03: "
                f"{ok(o['meets_mean_gain'])}). On equal data (pipeline minus `ce_plus_labels`, per variant, ID / OOD): "
                + ", ".join(f"{v} {d['id']:+.3f} / {d['ood']:+.3f}" for v, d in o.get("vs_ce_plus_labels", {}).items())
                + "."]
    return out


def posthoc_thresholds(name: str = "posthoc_thresholds", rule: str = "") -> list[str]:
    res = load(name)
    if not res:
        return [f"Post-hoc thresholds (`bench/posthoc_thresholds.py`, {name}): not run."]
    out = [f"**Where the post-hoc thresholds lie** (`bench/posthoc_thresholds.py` on `{res['checkpoint']}`: "
           f"{res['draws']} validation draws per size from val_id ({res['val_pool']['queries']:,} queries); blend, "
           "offsets and temperature decided with the support thresholds off (cross-fitted guards on); change in "
           "macro-F1 / ECE against no step, on the val_id queries not drawn, on the labelled shifted pool (where "
           f"thresholds are chosen) and on the test splits (reported only)). {rule}:", "",
           "| val queries | pairs | min pairs/grade | val rest | pool_ood | test_id | test_ood | "
           "kept blend / offsets / T |", "|---|---|---|---|---|---|---|---|"]
    for e in res["sizes"]:
        a = e["no_thresholds"]
        k = a["kept_share"]
        cells = " | ".join(f"{a[s + '_macro_f1_change']:+.4f} / {a[s + '_ece_change']:+.4f}"
                           for s in ("val_rest", "pool_ood", "id", "ood"))
        out.append(f"| {e['queries']} | {e['pairs']:.0f} | {e['min_per_grade']:.0f} | {cells} | "
                   f"{k['zero_shot_blend']:.0%} / {k['offsets']:.0%} / {k['temperature']:.0%} |")
    return out


def select_by_query() -> list[str]:
    data = load("select_by_query")
    if data is None:
        return ["**DASA by query** (`bench/select_by_query.py`): not run."]
    s = data["summary_mean_over_seeds"]
    row = lambda m: f"OOD share {s[m]['ood_share']:.3f}, {s[m]['queries']:.0f} queries"  # noqa: E731
    return [f"**DASA by query** (`bench/select_by_query.py`, Home Depot `small`, 1,000-pair budget, pretrained "
            f"backbone, {len(data['runs'])} seeds): by pair {row('by_pair')}; by query, mean {row('by_query_mean')} "
            f"(x{s['by_query_mean']['ood_share_vs_by_pair']:.2f}); by query, max {row('by_query_max')} "
            f"(x{s['by_query_max']['ood_share_vs_by_pair']:.2f}); random {row('random')}. Not run: {data['not_run']}."]


def data_selection() -> list[str]:
    res = load("data_selection")
    if not res:
        return ["Data selection (`bench/data_selection.py`): not run."]
    rows, summ = res.get("rows", {}), res.get("summary", {})
    out = [f"**Label noise on fine-tuned features, cleaning and data selection** (`bench/data_selection.py`: "
           f"{res['protocol']}; 1-min load average {load_span(res.get('load'))}). Detection AUROC (P@N) of the "
           "injected flips; `fine-tuned` = the ordinal check on the noisy `ce` version's pooled embeddings and "
           "logits, `own loss` = that fine-tune's per-pair training loss, `frozen` = the product's default:", "",
           "| noise | fine-tuned (ours) | fine-tuned, cleanlab | embeddings only | own loss | frozen | random |",
           "|---|---|---|---|---|---|---|"]
    names = ("finetuned_ordinal", "finetuned_cleanlab", "finetuned_embeddings_only_ordinal", "finetune_training_loss",
             "frozen_ordinal", "random")
    for key, d in res.get("detection", {}).items():
        cells = [f"{num(d[n]['auroc'])} ({num(d[n]['precision_at_n'])})" if n in d else "–" for n in names]
        out.append(f"| {key.replace('_', ' ')}% | " + " | ".join(cells) + " |")
    out += ["", "| row | pairs | steps | test_id macro-F1 | test_ood macro-F1 |", "|---|---|---|---|---|"]
    for name, r in rows.items():
        out.append(f"| {name} | {r['train_pairs']:,} | {r['steps']} | {num(r['id_macro_f1'])} | {num(r['ood_macro_f1'])} |")
    rec = [f"{k.removesuffix('_recovered')} " + (num(v, 2) if v is not None else "undefined, noise cost "
                                                 f"{num(summ[k.replace('_recovered', '_lost_to_noise')], 3)}")
           for k, v in summ.items() if k.endswith("_recovered")]
    if rec:
        out += ["", "Share of the macro-F1 lost to noise that cleaning won back (target ≥ 0.5; undefined where the "
                "noise cost nothing, a negative cost being a gain): " + "; ".join(rec) + "."]
    speed = load("label_check_speed")
    if speed:
        out += ["", f"Label check over {speed['pairs']:,} pairs (frozen default, {speed['torch_threads']} torch "
                f"thread(s), 1-min load {load_span(speed.get('load'))}): embedding {num(speed['embed_seconds'], 0)} s, "
                f"cross-fit and ranking {num(speed['cross_fit_and_rank_seconds'], 0)} s (target ≤ 300 s in all)."]
    return out


def data_selection_seeds() -> list[str]:
    res = load("data_selection_seeds")
    if not res or res["seeds"] < 2:
        return []
    out = [f"**Cleaning and selection over {res['seeds']} seeds** ({res['protocol']}): test macro-F1, mean ± sd:", "",
           "| row | seeds | pairs | test_id macro-F1 | test_ood macro-F1 |", "|---|---|---|---|---|"]
    for name, r in res["rows"].items():
        out.append(f"| {name} | {r['id_macro_f1']['n']} | {r['train_pairs']['mean']:,.0f} | "
                   f"{num(r['id_macro_f1']['mean'])} ± {num(r['id_macro_f1']['sd'])} | "
                   f"{num(r['ood_macro_f1']['mean'])} ± {num(r['ood_macro_f1']['sd'])} |")
    rec = [f"{k.removeprefix('ce_cleaned_').replace('_', ' ')} ({v['seeds']} seeds): lost {v['lost_to_noise']:+.3f}, won back "
           f"{v['won_back']:+.3f}" + (f" ({v['recovered']:.2f})" if v["recovered"] is not None else " (undefined)")
           for k, v in res["recovered"].items()]
    out += ["", "Cleaning, share of the noise's loss won back (target ≥ 0.5): " + "; ".join(rec) + "."]
    det = res["detection_auroc"]
    out += ["", "Detection AUROC over the seeds (fine-tuned ordinal / cleanlab / own loss / frozen / random): "
            + "; ".join(f"{k.replace('_', ' ')}% " + " / ".join(num(d[n]["mean"]) for n in d if d[n]["n"])
                        for k, d in det.items()) + "."]
    return out


def render() -> str:
    lines: list[str] = []
    lines += robustness() + [""]
    lines += robustness("robustness_all_e2") + [""]
    lines += ce_stability() + [""]
    lines += temperature_guard() + [""]
    lines += val_draw() + [""]
    lines += few_queries() + [""]
    lines += posthoc_thresholds(rule="Run under the earlier temperature rule (a softening T always kept): its ECE "
                                "columns show that rule's harm; the macro-F1 columns do not depend on it (a "
                                "temperature never changes the predicted grade)") + [""]
    lines += posthoc_thresholds("posthoc_thresholds_r2", "The same draws under the current rule (any temperature "
                                "must win out of fold)") + [""]
    lines += quality() + [""]
    lines += quality("quality_rerun", "Quality, the baseline and pipeline rows rerun on a fresh machine") + [""]
    lines += quality("quality_top2_1epoch", "Quality, cheaper training") + [""]
    lines += quality("quality_lora", "Quality, LoRA instead of full tuning (r 16 on every linear layer, lr 5e-4)") + [""]
    lines += zero_shot() + [""]
    lines += zero_shot_rows() + [""]
    lines += blend_cost() + [""]
    lines += significance() + [""]
    lines += significance("significance_rerun", "Beyond test noise, on the rerun?") + [""]
    lines += budget() + [""]
    lines += ablation() + [""]
    lines += ood() + [""]
    lines += label_noise() + [""]
    lines += label_noise_refit() + [""]
    lines += data_selection() + [""]
    lines += data_selection_seeds() + [""]
    lines += simple("Import", "import_speed", [("1M rows in s", "import.wall_s"), ("peak RSS MB", "import.peak_rss_mb"),
                                               ("row-by-row ORM µs/row", "per_row_us.naive_orm"),
                                               ("ours µs/row", "per_row_us.import"), ("speed-up", "speedup_per_row")])
    lines += [""] + simple("Selection at scale", "select_speed", [("1M pool vs 50k bank, s", "selection_seconds"),
                                                                   ("peak RSS GB", "peak_rss_gb"),
                                                                   ("per-pair speed-up vs sklearn brute kNN",
                                                                    "speedup_per_pair_vs_sklearn")])
    lines += [""] + simple("Annotation latency", "annotate_latency", [
        ("SQLite p50 ms", "sqlite.p50_ms"), ("p95 ms", "sqlite.p95_ms"),
        ("PostgreSQL p50 ms", "postgresql.p50_ms"), ("p95 ms", "postgresql.p95_ms")])
    lines += [""] + simple("Annotation latency, list mode (issue 24; submit a list of 10 -> next list)", "annotate_latency", [
        ("SQLite p50 ms per list", "sqlite.lists.p50_ms_per_list"), ("p95 ms", "sqlite.lists.p95_ms_per_list"),
        ("PostgreSQL p50 ms per list", "postgresql.lists.p50_ms_per_list"), ("p95 ms", "postgresql.lists.p95_ms_per_list"),
        ("target p95 ms", "sqlite.lists.target_p95_ms_per_list"),
        ("round trips per label vs cards", "sqlite.lists.round_trips_per_label")])
    lines += [""] + select_by_query() + [""] + simple("Maps", "map_speed", [("points", "n"), ("first UMAP fit s", "first_fit_s"),
                                                ("UMAP's own pynndescent path s", "baseline_first_fit_s"),
                                                ("speed-up", "speedup_first_fit_vs_pynndescent"),
                                                ("trustworthiness ours", "trustworthiness"),
                                                ("pynndescent", "baseline_trustworthiness"),
                                                ("re-render s", "rerender_s"),
                                                ("place 1k new s", "place_1000_s")])
    lines += [""] + simple("Maps page at 50k points, server side", "map_page", [("points drawn", "points_drawn"),
                                                                               ("page warm s", "page_warm_s"),
                                                                               ("page cold s", "page_cold_s"),
                                                                               ("floor (load + figure) s", "floor_s"),
                                                                               ("target s", "target_s")])
    lines += [""] + simple("Training speed", "train_speed", [("train pairs/s ours", "train_pairs_per_s_ours"),
                                                             ("Trainer", "train_pairs_per_s_trainer"),
                                                             ("speed-up", "train_speedup"),
                                                             ("inference speed-up vs fixed padding", "infer_speedup"),
                                                             ("peak training RSS GB", "peak_rss_gb_training")])
    lines += [""] + simple("List mode vs card mode, per label (scripted Chromium)", "list_mode_keys", [
        ("keys, cards", "card.keystrokes_per_label"), ("keys, lists", "list.keystrokes_per_label"),
        ("messages to server, cards", "card.messages_per_label"), ("lists", "list.messages_per_label"),
        ("ratio lists/cards", "messages_ratio_list_over_card")])
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--print", action="store_true")
    args = ap.parse_args()
    md = render()
    if args.print:
        print(md)
        return 0
    readme = ROOT / "docs" / "benchmarks.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} … {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{md}{END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
