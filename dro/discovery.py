"""Discovery scored against the truth of the synthetic world: did the audit name each class's shortcut?

Per class: the true shortcut (or none), the audit's verdict (``verdict`` of attributes.json when the
reasoning wrote one, else biased iff it handed labelling any attribute), those attributes, and for a
biased class whether its shortcut value is among them and how well CLIP labelled its bias-conflicting
slice. A class is truly biased when its shortcut value is over-represented in training: correlation
above chance (1 / number of values of the attribute). An attribute names a value when the value is one
of its words ("on water" names water).

Aggregates: ``shortcut_recall`` (share of biased classes whose shortcut value is among their
attributes), ``attribute_precision`` (share of all attributes handed to labelling that name their
class's shortcut value), ``false_positive_classes`` (unbiased classes reported biased) and
``labelling_f1`` (train F1 of each biased class's bias-conflicting slice).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dro.slices import ClassSlices
from world.synthetic import SyntheticWorldConfig


def names_value(attribute: str, value: str) -> bool:
    return value.lower() in re.findall(r"[a-z]+", attribute.lower())


def truly_biased(world: SyntheticWorldConfig, class_name: str) -> bool:
    s = world.shortcut(class_name)
    return s is not None and s.correlation > 1.0 / len(world.values(s.attribute))


def score_discovery(world: SyntheticWorldConfig, slices: Sequence[ClassSlices], labelling_train: dict) -> dict:
    """``labelling_train``: the train block of the label stage's quality (``per_class.<name>.f1_conflicting``)."""
    if [s.class_name for s in slices] != list(world.classes):
        raise ValueError(f"attributes for {[s.class_name for s in slices]}, world classes {list(world.classes)}")
    per_class = labelling_train.get("per_class", {})
    classes, found, precise, labelling_f1 = {}, [], [], {}
    for s in slices:
        name, shortcut = s.class_name, world.shortcut(s.class_name)
        biased = truly_biased(world, name)
        verdict = s.verdict or ("biased" if s.attributes else "no_evidence")
        hit = bool(shortcut) and any(names_value(a, shortcut.value) for a in s.attributes)
        precise += [bool(shortcut) and biased and names_value(a, shortcut.value) for a in s.attributes]
        entry = {
            "true_shortcut": None if shortcut is None else f"{shortcut.attribute}={shortcut.value}",
            "correlation": None if shortcut is None else shortcut.correlation,
            "biased": biased, "verdict": verdict, "attributes": list(s.attributes),
        }
        if biased:
            found.append(hit)
            f1 = per_class.get(name, {}).get("f1_conflicting")
            labelling_f1[name] = f1
            entry.update(found=hit, labelling_f1=f1)
        classes[name] = entry
    false_positives = [n for n, e in classes.items() if not e["biased"] and e["verdict"] == "biased"]
    return {
        "shortcut_recall": sum(found) / len(found) if found else None,
        "attribute_precision": sum(precise) / len(precise) if precise else None,
        "false_positive_classes": false_positives,
        "num_false_positive_classes": len(false_positives),
        "labelling_f1": labelling_f1,
        "classes": classes,
    }
