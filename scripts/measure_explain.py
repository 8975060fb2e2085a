"""Measures every explanation method on the shipped synthetic-motion model; prints the tables of
docs/explain.md (Markdown).

    PYTHONPATH=src .venv/bin/python scripts/measure_explain.py [--clips 24] [--seed 4242] [--sanity-clips 8]

1. Localisation: clips of the independent second generator (`data.second_generator.generate(...,
   return_masks=True)`, solid backgrounds), explained by `video_swin.explain` at the original resolution
   (16x64x64, which is also the clip's); ratio = mean heat inside the moving shape / mean heat outside
   (`explain.inside_outside_ratio`: 0 for a map without heat), over the correctly classified clips. Every
   method at every layer.
2. Sanity checks (Adebayo et al., NeurIPS 2018), each method at its default layer: cascading
   randomisation of the weights from the head down (`explain.cascading_randomisation`: each weight
   tensor's entries shuffled), Spearman rank correlation with the original map after each step, for the
   class the original model predicted; and the rank correlation between the predicted class's map and
   the second most probable class's.
Counts, not timings: the cost column is forward / backward passes per view.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np

LAYERS = ("patch_embed", "stage1", "stage2", "norm")


def _likeness(original, other):
    """Rank correlation with the original map; a map with no heat (constant, where the correlation is
    undefined) keeps nothing of a map that has some: 0."""
    from video_swin.inference.explain import rank_correlation

    return 0.0 if other.max() == 0 else rank_correlation(original, other)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--sanity-clips", type=int, default=8)
    args = parser.parse_args(argv)

    from video_swin.data import second_generator
    from video_swin.inference import explain as ex
    from video_swin.zoo.synthetic_motion import PRESET_DIR

    explainer = ex.Explainer(PRESET_DIR)
    x, y, masks = second_generator.generate(args.clips, seed=args.seed, return_masks=True)
    command = " ".join(["PYTHONPATH=src .venv/bin/python scripts/measure_explain.py", shlex.join(sys.argv[1:])]).strip()
    print(f"<!-- written by: {command} -->")
    print(f"Clips: `second_generator.generate({args.clips}, seed={args.seed}, return_masks=True)`; "
          f"the preset at `{PRESET_DIR.relative_to(PRESET_DIR.parents[3])}`.\n")

    print("| method | layer | correctly classified | median ratio | clips >= 2x | clips >= 3x | maps without heat | passes per view and class |")
    print("|---|---|---|---|---|---|---|---|")
    configurations = [("occlusion", None)] + [(m, layer) for m in ex.GRADIENT_METHODS for layer in LAYERS]
    for method, layer in configurations:
        ratios, correct, empty = [], 0, 0
        for i in range(len(x)):
            explanation = explainer(x[i], method=method, layer=layer)
            if explanation.class_indices[0] != y[i]:
                continue
            correct += 1
            empty += int(explanation.maps.max() == 0)  # ratio 0: it shows nothing
            ratios.append(ex.inside_outside_ratio(explanation.maps[0], masks[i]))
        ratios = np.asarray(ratios)
        default = " (default)" if method == ex.DEFAULT_METHOD else ""
        cost = (f"{explanation.details['perturbed_clips_per_view'] + 1} forward (all classes at once), "
                f"batches of {explanation.details['batch_size']}" if method == "occlusion"
                else "1 forward + 1 backward")
        star = " (default)" if layer == ex.DEFAULT_LAYERS.get(method) else ""
        print(f"| {method}{default} | {layer or '-'}{star} | {correct}/{len(x)} | {np.median(ratios):.1f} | "
              f"{100 * np.mean(ratios >= 2):.0f} % | {100 * np.mean(ratios >= 3):.0f} % | {empty} | {cost} |")

    steps = [name for name, _ in ex.randomisation_cascade(explainer)]
    print(f"\nSanity checks on the first {args.sanity_clips} clips: median (max) Spearman rank correlation "
          "with the original map after randomising each group on top of those before it (\"k empty\": k "
          "randomised maps had no heat left, counted as 0), and between the maps of the top two classes (a top-2 map with no heat counts as 0).\n")
    print("| method | layer | " + " | ".join(f"+ {s}" for s in steps) + " | top-1 vs top-2 class |")
    print("|---|---|" + "---|" * len(steps) + "---|")
    notes = []
    for method in ex.METHODS:
        layer = ex.DEFAULT_LAYERS.get(method)
        cascade, other, empties, blank = [], [], [0] * len(steps), 0
        for i in range(args.sanity_clips):
            original = explainer(x[i], method=method, top=2)
            if original.maps[0].max() == 0:  # nothing to compare with: left out, and said so
                blank += 1
                continue
            other.append(_likeness(original.maps[0], original.maps[1]))
            row = []
            for _ in ex.cascading_randomisation(explainer, seed=i):
                randomised = explainer(x[i], method=method, label=original.class_indices[0])
                row.append(_likeness(original.maps[0], randomised.maps[0]))
                empties[len(row) - 1] += int(randomised.maps.max() == 0)
            cascade.append(row)
        cascade = np.asarray(cascade)
        cells = [f"{np.median(c):.2f} ({np.max(c):.2f})" + (f", {e} empty" if e else "")
                 for c, e in zip(cascade.T, empties)]
        print(f"| {method} | {layer or '-'} | " + " | ".join(cells) + f" | {np.median(other):.2f} ({np.max(other):.2f}) |")
        if blank:
            notes.append(f"{method}: {blank} of the {args.sanity_clips} clips left out, their top class's map has no heat.")
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
