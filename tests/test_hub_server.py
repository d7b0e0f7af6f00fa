"""The local Hub against the real clients: what is pushed with huggingface_hub, transformers or datasets loads back.

Clients run in subprocesses because huggingface_hub reads HF_ENDPOINT when it is imported.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import HUB_TOKEN, hub_env
from tests.hub_server import hub_server

TOKEN = HUB_TOKEN

# Shared by the pushing and the loading client, so both sides describe a DatasetDict the same way.
DESCRIBE_DATASET = """
import hashlib, json

def describe(dataset_dict):
    return {split: {"features": ds.features.to_dict(),
                    "rows": [{**row, "image": [row["image"].size, row["image"].mode,
                                               hashlib.sha256(row["image"].tobytes()).hexdigest()]} for row in ds]}
            for split, ds in dataset_dict.items()}
"""


@pytest.fixture(scope="module")
def client(hub, tmp_path_factory):
    """Run Python code as a user would, against the hub, in a fresh HF_HOME; returns the last line it printed."""

    def run(code: str, *args: str, token: str | None = TOKEN) -> str:
        env = hub_env(hub.endpoint, tmp_path_factory.mktemp("hf-home"), token)
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout.strip().splitlines()[-1]

    return run


@pytest.fixture(scope="module")
def model_repo(client, tiny_model_dir) -> str:
    """The tiny counting model, uploaded with HfApi.upload_folder."""
    return client("""
        import sys
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo(sys.argv[1])
        api.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])
        print(sys.argv[1])
    """, "user/counter", str(tiny_model_dir))


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def test_pipeline_classifies_with_a_model_loaded_from_the_hub(hub, client, model_repo):
    predictions = json.loads(client("""
        import json, sys
        from PIL import Image
        from transformers import pipeline
        classify = pipeline("image-classification", model=sys.argv[1], top_k=6)
        print(json.dumps(classify(Image.new("RGB", (64, 48), (120, 30, 200)))))
    """, model_repo))
    assert sorted(p["label"] for p in predictions) == [str(i) for i in range(6)]
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)
    assert hub.tokens == {TOKEN}


def test_snapshot_download_gives_back_the_uploaded_bytes_without_a_token(client, model_repo, tiny_model_dir):
    snapshot = Path(client("from huggingface_hub import snapshot_download; import sys; "
                           "print(snapshot_download(sys.argv[1]))", model_repo, token=None))
    uploaded, downloaded = digests(tiny_model_dir), digests(snapshot)
    assert {path: downloaded.get(path) for path in uploaded} == uploaded
    assert set(downloaded) - set(uploaded) == {".gitattributes"}  # the Hub's initial commit


def test_dataset_dict_push_to_hub_then_load_dataset_round_trips(client):
    pushed = json.loads(client(DESCRIBE_DATASET + """
import sys
import datasets
from PIL import Image

features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["0", "1", "2"]),
                              "bin_id": datasets.Value("string")})

def split(size, seed):
    return datasets.Dataset.from_dict({
        "image": [Image.new("RGB", (4 + i, 3), (40 * seed + i, 10 * i, 200)) for i in range(size)],
        "label": [i % 3 for i in range(size)],
        "bin_id": [f"{seed}-{i:05d}" for i in range(size)]}, features=features)

dataset_dict = datasets.DatasetDict({"train": split(5, 1), "test": split(2, 2)})
dataset_dict.push_to_hub(sys.argv[1])
print(json.dumps(describe(dataset_dict)))
""", "user/bins"))
    loaded = json.loads(client(DESCRIBE_DATASET + """
import sys
import datasets
print(json.dumps(describe(datasets.load_dataset(sys.argv[1]))))
""", "user/bins"))
    assert loaded == pushed
    assert {split: len(d["rows"]) for split, d in loaded.items()} == {"train": 5, "test": 2}
    assert loaded["train"]["features"]["label"] == {"names": ["0", "1", "2"], "_type": "ClassLabel"}


def test_create_repo_without_a_token_fails_with_a_clear_401(client):
    status, message = json.loads(client("""
        import json, sys
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
        try:
            HfApi().create_repo(sys.argv[1])
        except HfHubHTTPError as error:
            print(json.dumps([error.response.status_code, str(error)]))
    """, "user/anonymous", token=None))
    assert status == 401
    assert "401 Unauthorized" in message and "Authorization: Bearer <token>" in message and "HF_TOKEN" in message


def test_private_repos_are_hidden_from_clients_without_a_token(client):
    seen = json.loads(client("""
        import json, sys
        from huggingface_hub import HfApi
        HfApi().create_repo(sys.argv[1], repo_type="dataset", private=True)
        HfApi().create_repo(sys.argv[1], repo_type="dataset", private=True, exist_ok=True)
        print(json.dumps([HfApi().repo_exists(sys.argv[1], repo_type="dataset"),
                          HfApi(token=False).repo_exists(sys.argv[1], repo_type="dataset")]))
    """, "user/private-bins"))
    assert seen == [True, False]


def test_a_second_commit_moves_main_while_the_first_sha_keeps_serving_old_content(client):
    shas, main_sha, served = json.loads(client("""
        import json, sys
        from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
        api, repo_id = HfApi(), sys.argv[1]
        api.create_repo(repo_id)
        shas = [api.create_commit(repo_id, commit_message=version, operations=[
                    CommitOperationAdd("notes.txt", version.encode()),
                    CommitOperationAdd("weights.bin", b"\\0" + version.encode())]).oid
                for version in ("first", "second")]
        served = {revision: [open(hf_hub_download(repo_id, name, revision=revision), "rb").read().decode()
                             for name in ("notes.txt", "weights.bin")]
                  for revision in ["main", *shas]}
        print(json.dumps([shas, api.repo_info(repo_id).sha, served]))
    """, "user/revisions"))
    first, second = shas
    assert first != second and main_sha == second
    assert served == {"main": ["second", "\0second"], second: ["second", "\0second"], first: ["first", "\0first"]}


def test_unknown_endpoints_answer_404_json_and_are_logged(tmp_path, capsys):
    with hub_server(tmp_path) as endpoint:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"{endpoint}/api/collections/user/app")
    assert answer.value.code == 404
    assert json.load(answer.value) == {"error": "This local Hub does not implement GET /api/collections/user/app."}
    assert "no route for GET /api/collections/user/app" in capsys.readouterr().err
