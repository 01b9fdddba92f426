"""Words for the measured verdict: the same sentences in the report, the rationale and the LLM's prompt.

Everything here reads ``ClassVerification.as_dict()`` (plain JSON), so reports can be rebuilt from
``verification.json`` without the models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

VERIFIED_SECTION = "Verdict of the counterfactual test"


def _effect_phrase(e: dict) -> str:
    return (f"{e['kind']} {e['effect']:+.2f} [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}], "
            f"p = {e['p_value']:.2g} (Holm {e['p_adjusted']:.2g})")


def _by_attribute(v: dict) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {a: {} for a in v.get("tested", {})}
    for e in v.get("effects", []):
        out.setdefault(e["attribute"], {})[e["kind"]] = e
    return out


def verdict_sentence(v: dict) -> str:
    """One bold sentence: the verdict, with the effects that support it."""
    name = v["class_name"]
    s = v["settings"]
    effects = _by_attribute(v)
    decisions = v.get("decisions", {})
    if v["verdict"] == "biased":
        parts = [f"\"{a}\" ({'; '.join(_effect_phrase(e) for e in effects[a].values())}; passed: "
                 f"{decisions.get(a, 'flip or drop')})" for a in v["verified"]]
        return (f"**Biased.** The classifier's answer for \"{name}\" depends on " + ", ".join(parts)
                + f": with the attribute, images of other classes are called \"{name}\" more often (flip) or "
                "the class's own images keep the class more often (drop) than with EACH of its alternatives, "
                f"significantly (Holm-adjusted p < {s['alpha']:g}) and by at least {s['min_effect']:g}.")
    if not v.get("conclusive", True):
        untestable = sorted({e["attribute"] for e in v.get("effects", []) if not e.get("testable", True)})
        return (f"**No evidence of a shortcut, and the test was inconclusive.** The classifier recognises too few of "
                f"the generated images of {', '.join(v.get('unreadable_contents', [])) or 'some contents'} (under "
                f"{s.get('min_recognition', 0):.0%} for every prompt), so the test of {', '.join(untestable)} could not "
                "read them: the generator's images are outside what the classifier learnt, and nothing is claimed "
                "either way.")
    if not effects:
        return (f"**No evidence of a shortcut.** No DEXTER keyword of \"{name}\" names an attribute that could be "
                "tested, so no bias claim is made.")
    reasons = []
    for a, by_kind in effects.items():
        tests = "; ".join(f"{k}: {_result(e)}" for k, e in by_kind.items())
        if "contradicted" in decisions.get(a, ""):
            tests += " -> contradicted"
        reasons.append(f"{a} ({tests})")
    return (f"**No evidence of a shortcut.** No tested keyword is verified for \"{name}\": " + ", ".join(reasons)
            + f". A test passes when significant (Holm-adjusted p < {s['alpha']:g}) and at least "
            f"{s['min_effect']:g} against every alternative; an attribute is verified when one test passes and the "
            "other does not find it against the class (see the test's rules below).")


def verification_table(v: dict) -> list[str]:
    rows = ["| attribute | kind | test | rate with | closest alternative: rate | effect | interval | p | p (Holm) "
            "| pooled effect | set aside | test result | verified |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    verified = set(v["verified"])
    decisions = v.get("decisions", {})
    for a, by_kind in _by_attribute(v).items():
        contradicted = "contradicted" in decisions.get(a, "")
        kind = v["tested"].get(a, {}).get("kind", "")
        for k in ("flip", "drop"):
            e = by_kind.get(k)
            if e is None:
                continue
            closest = e.get("closest_alternative") or "all alternatives"
            aside = e.get("set_aside_with", 0) + e.get("set_aside_without", 0)
            if e.get("rows_out_of_domain"):
                aside = f"{aside}; out of domain: {', '.join(e['rows_out_of_domain'])}"
            rows.append(f"| {a} | {kind} | {k} | {e['hits_with']}/{e['n_with']} ({e['rate_with']:.0%}) | {closest}: "
                        f"{e['hits_without']}/{e['n_without']} ({e['rate_without']:.0%}) | {e['effect']:+.2f} | "
                        f"[{e['ci_low']:+.2f}, {e['ci_high']:+.2f}] | {e['p_value']:.2g} | {e['p_adjusted']:.2g} | "
                        f"{e.get('pooled_effect', e['effect']):+.2f} | {aside} | {_result(e)} | "
                        f"{'yes' if a in verified else ('no (contradicted)' if contradicted else 'no')} |")
    return rows


def _result(e: dict) -> str:
    if e.get("passed"):
        return "passed"
    specific = e.get("specific_effect")
    if e.get("significant") and specific is not None and specific < e["effect"] and not e.get("passed"):
        return f"not specific (beyond every class's gain in recognition: {specific:+.2f})"
    if e.get("significant") and e.get("classes_with_effect", 0) < e.get("classes_needed", 0):
        return f"narrow (shows in {e['classes_with_effect']} of the {e['classes_needed']} classes needed)"
    if e.get("significant") and e.get("contexts_with_effect", 0) < e.get("contexts_needed", 0):
        return f"narrow (shows in {e['contexts_with_effect']} of the {e['contexts_needed']} contexts needed)"
    if not e.get("testable", True):
        return "untestable (no image left on a side)"
    if e["ci_high"] < 0:
        return "against the class (interval below zero)"
    return "saturated" if e.get("saturated") else "failed"


def verification_section(v: dict, activation: dict | None = None) -> str:
    """The report's closing section, written by code from the measurements; it overrides any text above."""
    s, cost = v["settings"], v["cost"]
    lines = [f"## {VERIFIED_SECTION}", "", verdict_sentence(v), ""]
    if v.get("tested"):
        lines += [f"Each keyword that names an attribute was tested on the classifier with {s['n_images']} "
                  "fresh-noise images per prompt: **flip** = share of OTHER classes' images called "
                  f"\"{v['class_name']}\" with the attribute minus with its alternatives; **drop** = the same for the "
                  f"class's own images. One-sided Fisher exact test, Holm correction over the {len(v['effects'])} "
                  f"tests of the class, {s['confidence']:.0%} Newcombe intervals. A test passes when significant and at least "
                  f"{s['min_effect']:g} against every alternative (the effect, interval and rate shown are those of the "
                  "closest alternative; the smallest effect); a shortcut passes either test"
                  + (", unless the other test's interval lies below zero (\"contradicted\": some alternative makes "
                     "the class MORE likely)" if s.get("veto_contradicted") else "")
                  + (f"; a flip must show in the content of {s['min_flip_classes']} other classes (or all tested)"
                     if s.get("min_flip_classes", 1) > 1 else "")
                  + ("; a drop must exceed by the same margin what the attribute does to the other classes' own "
                     "recognition (\"not specific\" otherwise)" if s.get("visibility_control") else "")
                  + (f"; a drop must show in {s['min_drop_contexts']} contexts of the class (or all tested)"
                     if s.get("min_drop_contexts", 1) > 1 else "")
                  + (f"; a flip must show in {s['min_flip_contexts']} contexts, the other classes pooled (or all "
                     "tested)" if s.get("min_flip_contexts", 1) > 1 else "")
                  + ". Images the CLIP judge "
                  "found not to show their prompt's class and value are not counted (\"set aside\"), nor are contents "
                  f"the classifier recognises in less than {s.get('min_recognition', 0):.0%} of the images of every one "
                  "of their prompts (\"out of domain\": its answers there say nothing about a shortcut).", ""]
        lines += verification_table(v) + [""]
        alts = [f"{a} vs {', '.join(t['alternatives'])}" for a, t in v["tested"].items()]
        lines += ["Alternatives: " + "; ".join(alts) + ".", ""]
    if v.get("skipped"):
        lines += ["Not tested: " + "; ".join(f"\"{w}\" ({why})" for w, why in v["skipped"].items()) + ".", ""]
    if activation:
        for key, title in (("prompts", "DEXTER prompts"), ("captions", "captions")):
            scores = activation.get(key) or []
            if scores:
                lines += [f"Activation scores of the {title} (% of {scores[0]['n']} fresh-noise images classified as "
                          f"\"{v['class_name']}\"): " + "; ".join(f"\"{a['prompt']}\" {a['score']:.0f}%" for a in scores)
                          + ".", ""]
    total = v.get("cost_total", cost)
    lines.append(f"Cost of this class: {total['images_generated']} images generated, {total['seconds']:.1f} s "
                 f"(the test itself: {cost['images_used']} images used, {cost['images_generated']} of them new, "
                 f"{cost['seconds']:.1f} s; images already made for another class or prompt are reused).")
    return "\n".join(lines) + "\n"


def verification_text(v: dict) -> str:
    """The measurements as the language model reads them, with the instruction that they are binding."""
    lines = ["Counterfactual test on the classifier itself (measured, binding: your report must agree with it):",
             verdict_sentence(v).replace("**", "")]
    for a, by_kind in _by_attribute(v).items():
        lines.append(f"- {a}: " + "; ".join(_effect_phrase(e) for e in by_kind.values()))
    if v.get("skipped"):
        lines.append("Not tested: " + "; ".join(f"{w} ({why})" for w, why in v["skipped"].items()))
    return "\n".join(lines)


_CLAIM = re.compile(r"\b(bias\w*|shortcut\w*|relies|rely|relying|depends?)\b", re.I)
_NEGATION = re.compile(r"\b(no|not|never|none|without|cannot|isn't|doesn't|does not|unlikely)\b|n't\b", re.I)


def contradictions(report: str, v: dict) -> list[str]:
    """Sentences of a (language-model) report that claim a bias the test did not verify.

    A claim is a sentence that speaks of bias, shortcuts or reliance without a negation, and names a tested
    attribute that was not verified, or, when nothing was verified, any such sentence at all.
    """
    verified = {a.lower() for a in v["verified"]}
    rejected = {a.lower() for a in v.get("tested", {})} - verified
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", report):
        text = sentence.strip()
        if not text or text.startswith("#") or not _CLAIM.search(text) or _NEGATION.search(text):
            continue
        words = set(re.findall(r"[a-z][a-z'-]*", text.lower()))
        names = {a for a in rejected if set(a.split()) <= words}
        if names or (not verified and re.search(r"\bbiased\b", text, re.I)):
            out.append(text)
    return out


def rationale(v: dict, proposed: Sequence[str], backend_rationale: str) -> str:
    """Why these attributes: the verdict, and what the backend proposed that the test did not confirm."""
    text = verdict_sentence(v).replace("**", "")
    unconfirmed = [p for p in proposed if p not in v["verified"]]
    if unconfirmed:
        text += (" Proposed by the reasoning backend but not verified by the test, so not used: "
                 + ", ".join(unconfirmed) + ".")
    return text + " Backend's reasoning: " + backend_rationale.strip()


__all__ = ["VERIFIED_SECTION", "rationale", "verdict_sentence", "verification_section", "verification_table",
           "verification_text", "contradictions"]
