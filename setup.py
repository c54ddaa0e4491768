"""cvrank: a TFX pipeline ranking CVs against job descriptions with GloVe word embeddings.

Inside the runtime the project is on PYTHONPATH, so one runtime serves every clone; this file is for
installing cvrank into an existing TFX 1.21 environment (`pip install -e .[test]`, the Docker image).
"""

from setuptools import find_packages, setup

setup(
    name="cvrank",
    version="0.1.0",
    description="TFX pipeline: GloVe embeddings trained on CVs, ranking CVs against job descriptions",
    license="Apache-2.0",
    python_requires=">=3.10,<3.14",
    packages=find_packages(
        # Every package a Beam worker or Airflow worker may import (Beam's setup_file ships these).
        include=["cvrank", "cvrank.*", "config", "config.*", "dataset", "dataset.*", "metadata", "metadata.*",
                 "pipeline", "pipeline.*", "components", "components.*", "transform", "transform.*",
                 "trainer", "trainer.*", "serving", "serving.*", "evaluation", "evaluation.*",
                 "orchestration", "orchestration.*", "analysis", "analysis.*"]
    ),
    install_requires=[
        "tfx==1.21.0",
        "tensorflow>=2.21,<2.22",
        "tensorflow-transform>=1.21,<1.22",
        "tensorflow-model-analysis>=0.52,<0.53",
        "ml-metadata==1.21.0",
        "apache-beam>=2.77",
    ],
    extras_require={"test": ["pytest", "scikit-learn", "rank-bm25"]},
    entry_points={"console_scripts": ["cvrank = cvrank.cli:main"]},
)
