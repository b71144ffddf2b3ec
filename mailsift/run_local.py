"""`make run`: bring mailsift up on this host for a look.

For now: make sure the default model exists (trained from ../shared/corpora when models/ has
none) and classify the sample messages in tests/data/classifier/samples/ with it. Later parts
extend this to start the pipeline (Postfix, milter, store).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "tests" / "data" / "classifier" / "samples"


def classify_samples(dbpath: str, samples: Path = SAMPLES, required: float = 5.0) -> list[tuple[str, str, float | None, float]]:
    from mailsift.classifier.api import load_model

    model = load_model(dbpath)
    results = []
    for path in sorted(samples.glob("*.eml")):
        v = model.verdict(path.read_bytes(), required=required)
        results.append((path.name, v.label, v.probability, v.score))
    return results


def main(argv: list[str] | None = None) -> int:
    from mailsift.classifier.api import ModelError
    from mailsift.classifier.default_model import ensure_default_model

    parser = argparse.ArgumentParser(prog="python -m mailsift.run_local", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dbpath", default=str(REPO / "models"), metavar="DIR")
    args = parser.parse_args(argv)
    try:
        ensure_default_model(args.dbpath)
        results = classify_samples(args.dbpath)
    except (ModelError, FileNotFoundError) as exc:
        print(f"run_local: {exc}", file=sys.stderr)
        return 1
    print(f"\nSample messages classified with the model in {args.dbpath}:")
    print(f"  {'message':<22} {'verdict':<8} {'probability':>11} {'score':>6}")
    for name, label, prob, score in results:
        p = "-" if prob is None else f"{prob:.4f}"
        print(f"  {name:<22} {label:<8} {p:>11} {score:>6.1f}")
    print("\nTry: .venv/bin/mailsift classify -p --dbpath models < some-message.eml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
