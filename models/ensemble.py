"""Average several LightGBM boosters into one model text (a seed ensemble), so serving stays one model file.

Every tree's leaf values (and internal values, which ``pred_contrib`` uses) are divided by the number of
models and the trees are concatenated: the merged model's raw margin is the mean of the models' margins,
so LightGBM, lleaves and the SHAP contributions read it like any other model.
"""

from __future__ import annotations

import lightgbm as lgb

_SCALED_KEYS = ("leaf_value=", "internal_value=")


def _split_model(text: str) -> tuple[list[str], list[list[str]], list[str]]:
    lines = text.split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("Tree="))
    end = lines.index("end of trees")
    header = [line for line in lines[:first] if not line.startswith("tree_sizes=")]
    trees: list[list[str]] = []
    for line in lines[first:end]:
        if line.startswith("Tree="):
            trees.append([])
        trees[-1].append(line)
    return header, trees, lines[end:]


def _scaled(line: str, factor: float) -> str:
    for key in _SCALED_KEYS:
        if line.startswith(key):
            return key + " ".join(repr(float(v) * factor) for v in line[len(key) :].split())
    return line


def average_models(texts: list[str]) -> str:
    """One model text whose raw margin is the mean of ``texts``' margins (same features and objective)."""
    if len(texts) == 1:
        return texts[0]
    parts = [_split_model(text) for text in texts]
    header, _, footer = parts[0]
    if any(p[0] != header for p in parts):
        raise ValueError("models differ in features or objective; they cannot be averaged")
    factor = 1.0 / len(texts)
    out = list(header)
    n = 0
    for _, trees, _ in parts:
        for tree in trees:
            out.append(f"Tree={n}")
            out += [_scaled(line, factor) for line in tree[1:]]
            n += 1
    # LightGBM re-writes it with the ``tree_sizes`` header that lleaves needs.
    return str(lgb.Booster(model_str="\n".join(out + footer)).model_to_string())
