"""How well the Edu criterion follows the FineWeb-Edu rubric, teacher and criterion as used: Spearman of
their scores with the 150 documents scored by the FineWeb-Edu prompt (``labels/fineweb_edu_prompt_scores.csv``),
from a finished storage root (read only).

    .venv/bin/python benchmarks/edu_rubric.py STORAGE [PRESET]
"""

import sys

import numpy as np

from quadmix_assets.dagster_support.resources import QuadmixSettings
from quadmix_assets.scoring import cards
from quadmix_assets.scoring.criteria import criteria, load_edu_teacher

settings = QuadmixSettings.from_env(storage_root=sys.argv[1], preset=sys.argv[2] if len(sys.argv) > 2 else "cpu")
storage = settings.storage()
texts, ref = cards.load_fineweb_edu_prompt_scores(settings.data_dir)
teacher = load_edu_teacher(settings, storage)
print("edu teacher:", cards.edu_prompt_agreement(np.asarray(teacher.score(texts)[0]), ref))
edu = next(c for c in criteria() if c.name == "edu")
score, _ = edu.make_scorer(settings, storage)
print(f"edu as used ({settings.config().teacher('edu').mode}):",
      cards.edu_prompt_agreement(np.asarray(score(texts).values), ref))
