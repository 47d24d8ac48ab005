"""The extension's metadata, checked as the Slicer ExtensionsIndex checks it before listing an extension.

The index takes ``SpinalLesionSeg.json`` (the extension name is the file name); its CI validates the file against
the schema its ``$schema`` URL names, then runs ``scripts/check_description_files.py``: extension name, category,
repository name, scm_url syntax, and (on a clone of the repository) the top-level CMakeLists.txt: ``project()``
equals the extension name, ``EXTENSION_ICONURL`` and ``EXTENSION_SCREENSHOTURLS`` are http URLs of images, and a
LICENSE exists. The schemas and the rule data (prefixes, exception lists, accepted categories) are copies in
``../shared/reference/slicer`` (see its README for their sources); the checks below follow that script's logic
with that data, offline: an image URL must map to a PNG in this repository instead of being downloaded.

The ``.s4ext`` file is the older description format, kept consistent with the JSON and CMake for Slicer builds
that still read it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import urllib.parse as urlparse
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from PIL import Image

EXTENSION_NAME = "SpinalLesionSeg"
REPOSITORY = "SpinalLesionSeg/SlicerSpinalLesionSeg"
OLD_REPOSITORY = "SpinalLesionSeg/SpinalLesionSeg"
REQUIRED_SLICER = "Slicer >= 5.10"
#: owner/name of a repository in a github.com or raw.githubusercontent.com URL.
GITHUB_REPOSITORY_URL = r"(?:github\.com|raw\.githubusercontent\.com)/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/\s\"')>]|$)"
MAX_IMAGE_BYTES = 300_000

S4EXT_KEYWORDS = {
    "scm", "scmurl", "scmrevision", "depends", "build_subdirectory", "homepage", "contributors", "category",
    "iconurl", "status", "description", "screenshoturls", "enabled",
}


@pytest.fixture(scope="session")
def slicer_reference(shared_reference: Path) -> Path:
    """``../shared/reference/slicer``: the schemas and the index rules (conftest's ``shared_reference`` skips, or
    fails when SPINAL_LESION_SEG_REQUIRE_DATA=1, when the reference folder is missing)."""
    folder = shared_reference / "slicer"
    if not folder.is_dir():
        pytest.fail(f"{folder} is missing from the shared reference folder")
    return folder


@pytest.fixture(scope="session")
def rules(slicer_reference: Path) -> dict:
    return json.loads((slicer_reference / "extensions-index-rules.json").read_text())


def index_entry() -> dict:
    return json.loads((REPO_ROOT / f"{EXTENSION_NAME}.json").read_text())


def cmake_text() -> str:
    return (REPO_ROOT / "CMakeLists.txt").read_text()


def cmake_settings(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r'set\((EXTENSION_\w+)\s+"([^"]*)"\)', text)}


def parse_s4ext(text: str) -> dict[str, str]:
    """One ``keyword value`` per non-comment line; raises ValueError on anything else."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, value = stripped.partition(" ")
        if not re.fullmatch(r"[a-z_]+", keyword) or keyword in entries:
            raise ValueError(f"line {number}: bad or repeated keyword {keyword!r}")
        entries[keyword] = value.strip()
    return entries


def s4ext() -> dict[str, str]:
    return parse_s4ext((REPO_ROOT / f"{EXTENSION_NAME}.s4ext").read_text())


# --- the index's checks (scripts/check_description_files.py), with the rule data from the reference copy --------

def repository_name(scm_url: str) -> str:
    """The repository name as ``check_git_repository_name`` takes it: last path part of the URL, minus ``.git``."""
    url = scm_url.strip().strip("/")
    return os.path.splitext(urlparse.urlsplit(url).path.split("/")[-1])[0]


def index_check_errors(extension_name: str, metadata: dict, rules: dict) -> list[str]:
    """What the index's metadata checks report for an entry (empty: it passes): required keys, extension name,
    category, repository name and scm_url syntax."""
    errors = [f"{key} key is missing" for key in ("category", "scm_url") if key not in metadata]
    errors += [f"{key} value is not set" for key in ("category", "scm_url")
               if key in metadata and metadata[key] is None]
    if errors:
        return errors
    if (extension_name not in rules["extension_name_check_exceptions"]
            and extension_name.lower().startswith("slicer")):
        errors.append(f"extension name should not start with 'Slicer': {extension_name}")
    if metadata["category"] not in rules["accepted_extension_categories"]:
        errors.append(f"category {metadata['category']!r} is unknown")
    name = repository_name(metadata["scm_url"])
    if not name:
        errors.append(f"failed to determine the repository name from scm_url {metadata['scm_url']!r}")
    elif (name not in rules["repository_name_check_exceptions"]
          and not any(name.startswith(prefix) for prefix in rules["repository_name_allowed_prefixes"])):
        errors.append(f"git repository name should start with 'Slicer': {name}")
    if "://" not in metadata["scm_url"]:
        errors.append("scm_url do not match scheme://host/path")
    else:
        scheme = urlparse.urlsplit(metadata["scm_url"]).scheme
        if scheme not in rules["scm_url_schemes"]:
            errors.append(f"scm_url scheme is {scheme!r} but it should be any of {rules['scm_url_schemes']}")
    return errors


def cmakelists_errors(extension_name: str, text: str) -> list[str]:
    """``check_cmakelists_content`` without the network: project() name, icon URL and screenshot URLs."""
    errors = []
    project = re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", text, re.IGNORECASE | re.MULTILINE)
    name = project[0].strip().strip('"').strip("'") if project else None
    if name != extension_name:
        errors.append(f"CMakeLists.txt project name {name!r} does not match the extension name {extension_name!r}")
    icon = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', text, re.IGNORECASE | re.MULTILINE)
    if not icon:
        errors.append("No EXTENSION_ICONURL found in CMakeLists.txt.")
    elif not icon[0].strip().startswith("http"):
        errors.append(f"EXTENSION_ICONURL {icon[0]!r} should be a URL starting with 'http'")
    shots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', text, re.IGNORECASE | re.MULTILINE)
    urls = shots[0].split() if shots else []
    if not urls:
        errors.append("No EXTENSION_SCREENSHOTURLS found in CMakeLists.txt.")
    errors += [f"EXTENSION_SCREENSHOTURLS {url!r} should be a URL starting with 'http'"
               for url in urls if not url.startswith("http")]
    return errors


def image_problems(s4ext_entries: dict[str, str], settings: dict[str, str], entry: dict) -> list[str]:
    """What is wrong with the icon and screenshot URLs of the .s4ext and CMake (empty: nothing): they must agree,
    be ``https://raw.githubusercontent.com/<repository of scm_url>/<scm_revision>/<path>`` and ``<path>`` must be
    a PNG in this repository (128x128 for the icon, at least 128 px wide and high for a screenshot, under
    MAX_IMAGE_BYTES), which is what the index downloads once the repository is pushed."""
    problems = []
    if s4ext_entries["iconurl"] != settings["EXTENSION_ICONURL"]:
        problems.append("the .s4ext and CMake icon URLs differ")
    if s4ext_entries["screenshoturls"].split() != settings["EXTENSION_SCREENSHOTURLS"].split():
        problems.append("the .s4ext and CMake screenshot URLs differ")
    repository = urlparse.urlsplit(entry["scm_url"]).path.strip("/").removesuffix(".git")
    prefix = f"https://raw.githubusercontent.com/{repository}/{entry.get('scm_revision', 'main')}/"
    urls = [("icon", settings["EXTENSION_ICONURL"])] + [
        ("screenshot", url) for url in settings["EXTENSION_SCREENSHOTURLS"].split()]
    if len(urls) < 2:
        problems.append("no screenshot URL")
    for kind, url in urls:
        if not url.startswith(prefix):
            problems.append(f"{kind} {url} is not under {prefix}")
            continue
        path = REPO_ROOT / url.removeprefix(prefix)
        if not path.is_file():
            problems.append(f"{kind} {path.relative_to(REPO_ROOT)} does not exist")
            continue
        if path.stat().st_size >= MAX_IMAGE_BYTES:
            problems.append(f"{kind} {path.relative_to(REPO_ROOT)} is {path.stat().st_size} bytes")
        with Image.open(path) as image:
            if image.format != "PNG":
                problems.append(f"{kind} {path.relative_to(REPO_ROOT)} is not a PNG")
            elif kind == "icon" and image.size != (128, 128) or min(image.size) < 128:
                problems.append(f"{kind} {path.relative_to(REPO_ROOT)} is {image.size[0]}x{image.size[1]}")
    return problems


# --- tests -------------------------------------------------------------------------------------------------------

def test_index_entry_validates_against_the_schema_it_names(slicer_reference: Path) -> None:
    import jsonschema

    entry = index_entry()
    url = entry["$schema"]
    assert url.startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"), url
    schema_path = slicer_reference / Path(urlparse.urlsplit(url).path).name
    assert schema_path.is_file(), f"{url} names no schema copied in {slicer_reference}"
    schema = json.loads(schema_path.read_text())
    assert schema["$id"].split("#")[0] == url.split("#")[0]
    jsonschema.validate(entry, schema)  # what the index's check_json_schema does with the downloaded schema

    for bad in ({**entry, "homepage": "https://example.org"}, {k: v for k, v in entry.items() if k != "scm_url"},
                {**entry, "tier": 7}, {**entry, "build_dependencies": "PyTorch"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_index_entry_file_format() -> None:
    """check_json_file_format: valid JSON with LF-only line endings; the file name is the extension name."""
    raw = (REPO_ROOT / f"{EXTENSION_NAME}.json").read_bytes()
    assert b"\r" not in raw
    json.loads(raw)
    assert sorted(p.name for p in REPO_ROOT.glob("*.json")) == [f"{EXTENSION_NAME}.json"]


def test_metadata_passes_the_index_checks(rules: dict) -> None:
    entry = index_entry()
    assert index_check_errors(EXTENSION_NAME, entry, rules) == []
    assert cmakelists_errors(EXTENSION_NAME, cmake_text()) == []
    assert repository_name(entry["scm_url"]) == REPOSITORY.split("/")[1]
    assert entry["category"] == "Segmentation"
    assert (REPO_ROOT / "LICENSE").is_file()  # check_license_file


@pytest.mark.parametrize(("change", "expected"), [
    ({"scm_url": f"https://github.com/{OLD_REPOSITORY}.git"}, "repository name should start with 'Slicer'"),
    ({"scm_url": "https://github.com/SpinalLesionSeg/SpinalLesionSeg-Slicer"}, "repository name"),
    ({"scm_url": "github.com/SpinalLesionSeg/SlicerSpinalLesionSeg.git"}, "scheme://host/path"),
    ({"scm_url": "ssh://git@github.com/SpinalLesionSeg/SlicerSpinalLesionSeg.git"}, "scm_url scheme is 'ssh'"),
    ({"scm_url": "https://github.com/"}, "failed to determine the repository name"),
    ({"category": "MRI"}, "category 'MRI' is unknown"),
    ({"category": None}, "category value is not set"),
    ({"scm_url": None}, "scm_url value is not set"),
])
def test_index_checks_reject_bad_metadata(rules: dict, change: dict, expected: str) -> None:
    entry = {**copy.deepcopy(index_entry()), **change}
    errors = index_check_errors(EXTENSION_NAME, entry, rules)
    assert any(expected in error for error in errors), errors


def test_the_checks_reject_the_old_metadata(rules: dict) -> None:
    """The metadata before these checks existed: repository SpinalLesionSeg/SpinalLesionSeg and a screenshot
    URL naming a file that was never added."""
    def old(text: str) -> str:
        return text.replace(REPOSITORY, OLD_REPOSITORY).replace("SpinalLesionSeg-results.png",
                                                                "SpinalLesionSeg-panel.png")

    entry = json.loads(old((REPO_ROOT / f"{EXTENSION_NAME}.json").read_text()))
    assert index_check_errors(EXTENSION_NAME, entry, rules) == [
        "git repository name should start with 'Slicer': SpinalLesionSeg"]
    problems = image_problems(parse_s4ext(old((REPO_ROOT / f"{EXTENSION_NAME}.s4ext").read_text())),
                              cmake_settings(old(cmake_text())), entry)
    assert problems == ["screenshot Resources/Screenshots/SpinalLesionSeg-panel.png does not exist"]
    # The current files against the old scm_url: their image URLs name another repository.
    assert any("is not under" in p for p in image_problems(s4ext(), cmake_settings(cmake_text()), entry))


def test_extension_name_rule(rules: dict) -> None:
    """The extension (JSON file, CMake project) must not start with "Slicer"; the repository must."""
    entry = index_entry()
    assert any("should not start with 'Slicer'" in e for e in index_check_errors("SlicerSpinalLesionSeg", entry, rules))
    assert any("should not start with 'Slicer'" in e for e in index_check_errors("slicerLesions", entry, rules))
    exception = rules["extension_name_check_exceptions"][0]
    assert index_check_errors(exception, entry, rules) == []
    listed = {**entry, "scm_url": f"https://github.com/someone/{rules['repository_name_check_exceptions'][0]}"}
    assert index_check_errors(EXTENSION_NAME, listed, rules) == []
    bad_project = cmake_text().replace(f"project({EXTENSION_NAME})", "project(SlicerSpinalLesionSeg)")
    assert cmakelists_errors(EXTENSION_NAME, bad_project)


def test_cmakelists_check_catches_missing_or_relative_urls() -> None:
    text = cmake_text()
    no_icon = re.sub(r"set\(EXTENSION_ICONURL[^\n]*\n", "", text)
    assert cmakelists_errors(EXTENSION_NAME, no_icon) == ["No EXTENSION_ICONURL found in CMakeLists.txt."]
    relative = re.sub(r'set\(EXTENSION_SCREENSHOTURLS "[^"]*"\)',
                      'set(EXTENSION_SCREENSHOTURLS "Resources/Screenshots/SpinalLesionSeg-results.png")', text)
    assert cmakelists_errors(EXTENSION_NAME, relative) == [
        ("EXTENSION_SCREENSHOTURLS 'Resources/Screenshots/SpinalLesionSeg-results.png' should be a URL starting "
         "with 'http'")]


def test_icon_and_screenshot_urls_map_to_images_in_the_repository() -> None:
    assert image_problems(s4ext(), cmake_settings(cmake_text()), index_entry()) == []
    assert cmake_settings(cmake_text())["EXTENSION_ICONURL"].endswith("/main/Resources/Icons/SpinalLesionSeg.png")
    assert "/main/Resources/Screenshots/" in cmake_settings(cmake_text())["EXTENSION_SCREENSHOTURLS"]


def test_every_url_names_the_slicer_prefixed_repository() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    texts = {
        "SpinalLesionSeg.json": index_entry()["scm_url"],
        "SpinalLesionSeg.s4ext": (REPO_ROOT / "SpinalLesionSeg.s4ext").read_text(),
        "CMakeLists.txt": cmake_text(),
        "pyproject.toml [project.urls]": " ".join(
            tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["urls"].values()),
        "README.md": (REPO_ROOT / "README.md").read_text(),
        "docs/user-guide.md": (REPO_ROOT / "docs" / "user-guide.md").read_text(),
    }
    for name, text in texts.items():
        repositories = set(re.findall(GITHUB_REPOSITORY_URL, text))
        repositories = {r for r in repositories if r.split("/")[0] == REPOSITORY.split("/")[0]}
        assert repositories <= {REPOSITORY}, f"{name}: {repositories}"
        assert f"github.com/{OLD_REPOSITORY}" not in text and f"githubusercontent.com/{OLD_REPOSITORY}/" not in text
    assert REPOSITORY in texts["SpinalLesionSeg.s4ext"] and REPOSITORY in texts["pyproject.toml [project.urls]"]


def test_s4ext_json_and_cmake_agree() -> None:
    s4ext_files = list(REPO_ROOT.glob("*.s4ext"))
    assert [p.name for p in s4ext_files] == ["SpinalLesionSeg.s4ext"]
    entries = parse_s4ext(s4ext_files[0].read_text())
    assert S4EXT_KEYWORDS <= set(entries), f"missing: {S4EXT_KEYWORDS - set(entries)}"

    text = cmake_text()
    project = re.search(r"project\(\s*(\w+)", text).group(1)
    settings = cmake_settings(text)
    entry = json.loads((REPO_ROOT / f"{project}.json").read_text())

    assert s4ext_files[0].stem == project == "SpinalLesionSeg"
    assert not project.lower().startswith("slicer")
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert entries["category"] == settings["EXTENSION_CATEGORY"] == entry["category"] == "Segmentation"
    assert entries["homepage"] == settings["EXTENSION_HOMEPAGE"] == entry["scm_url"].removesuffix(".git")
    assert entries["scmurl"] == entry["scm_url"]
    assert entries["scm"] == entry.get("scm_type", "git") == "git"
    assert entries["scmrevision"] == entry["scm_revision"]
    assert entries["build_subdirectory"] == entry["build_subdirectory"]
    assert entries["depends"].split() == settings["EXTENSION_DEPENDS"].split() == entry["build_dependencies"]
    assert "PyTorch" in entry["build_dependencies"]
    assert entries["iconurl"] == settings["EXTENSION_ICONURL"]
    assert settings["EXTENSION_ICONURL"].endswith("Resources/Icons/SpinalLesionSeg.png")
    assert entries["screenshoturls"] == settings["EXTENSION_SCREENSHOTURLS"]
    assert entries["description"] == settings["EXTENSION_DESCRIPTION"]
    assert entries["contributors"] == settings["EXTENSION_CONTRIBUTORS"]
    for key in ("EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_SCREENSHOTURLS"):
        assert settings.get(key), key
    assert "add_subdirectory(SpinalLesionSeg)" in text
    assert (REPO_ROOT / "LICENSE").read_text().split()[:2] == ["Apache", "License"]


def test_s4ext_parser_rejects_repeated_keywords() -> None:
    with pytest.raises(ValueError):
        parse_s4ext("scm git\nscm svn\n")


def test_required_slicer_version_is_stated_and_enforced() -> None:
    """Slicer 5.8 ships Python 3.9; nnunetv2 2.8 and the module's code need Slicer 5.10's Python 3.12."""
    assert REQUIRED_SLICER in s4ext()["description"]
    assert REQUIRED_SLICER in cmake_settings(cmake_text())["EXTENSION_DESCRIPTION"]
    for doc in ("README.md", "docs/user-guide.md"):
        assert REQUIRED_SLICER in (REPO_ROOT / doc).read_text(), doc
    guard = re.search(r'if\("\$\{Slicer_VERSION_MAJOR\}\.\$\{Slicer_VERSION_MINOR\}" VERSION_LESS "([\d.]+)"\)\s*'
                      r"message\(FATAL_ERROR", cmake_text())
    assert guard and guard.group(1) == "5.10"


def test_readme_tells_the_maintainer_the_repository_topic() -> None:
    """check_git_repository_topics asks GitHub for the topic 3d-slicer-extension: it is set on GitHub, not in a
    file, so the README's publishing note must say so."""
    readme = (REPO_ROOT / "README.md").read_text()
    publishing = readme[readme.index("## Publishing"):]
    assert "`3d-slicer-extension`" in publishing and f"github.com/{REPOSITORY}" in publishing


def test_doc_figures_exist_and_are_small() -> None:
    """The figures the user guide and the performance page show (benchmark plots: bench/*.py)."""
    guide = (REPO_ROOT / "docs" / "user-guide.md").read_text()
    assert re.findall(r"!\[[^\]]*\]\(([^)]+)\)", guide), "the user guide shows no figure"
    pages = guide + (REPO_ROOT / "docs" / "performance.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", pages)
    figures = REPO_ROOT / "docs" / "figures"
    for link in links:
        path = (REPO_ROOT / "docs" / link).resolve()
        assert path.is_file(), link
        assert path.parent == figures and path.stat().st_size < MAX_IMAGE_BYTES, link
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) >= 128, link
    assert {p.name for p in figures.glob("*.png")} <= {Path(link).name for link in links}, "unused figure"
