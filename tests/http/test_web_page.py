"""The web page at / in a real headless chromium (Selenium), against a real face server.

People are enrolled from the test photos (most through the gRPC client, for speed, and
one through the page's own form) until the open-set rule is calibrated; then held-out
photos are identified through the page's file input, and the page must say what the
server decided. Rename and forget go through the page too, and a screenshot is taken.

Needs Debian's `chromium` and `chromium-driver`: without them the tests skip, unless
FACESEARCH_REQUIRE_BROWSER=1 (set by CI), where they fail.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from fsclient import FaceSearchClient
from support import RunningServer, photos_by_person

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    HAVE_SELENIUM = True
except ImportError:  # pragma: no cover - the dev extra brings it
    HAVE_SELENIUM = False

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WAIT = 30.0  # seconds any one thing on the page may take
STRANGER = "p12"  # never enrolled: the last person, as conftest's gallery has it
THROUGH_PAGE = "p03"  # enrolled through the page's form
PNG = b"\x89PNG\r\n\x1a\n"


def _unavailable(reason: str) -> NoReturn:
    message = f"{reason}: the web page tests need a headless chromium"
    if os.environ.get("FACESEARCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{message} (FACESEARCH_REQUIRE_BROWSER=1)")
    pytest.skip(f"{message} (apt-get install chromium chromium-driver)")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not HAVE_SELENIUM:
        _unavailable("selenium is not installed (the dev extra)")
    chrome = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if chrome is None or driver_path is None:
        missing = [
            name for name, at in (("chromium", chrome), ("chromedriver", driver_path)) if not at
        ]
        _unavailable(f"{' and '.join(missing)} not found on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1100",
    ):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    except WebDriverException as error:
        _unavailable(f"chromium did not start ({error.msg})")
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = WAIT) -> Any:
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]
    ).until(condition)


def by_test_id(driver: Any, test_id: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f"[data-testid={test_id}]")


def people_on_page(driver: Any) -> dict[str, str]:
    """label → the count text, as the page lists them (read at once, in the page)."""
    return dict(
        driver.execute_script(
            "return [...document.querySelectorAll('[data-testid=person]')].map(row =>"
            " [row.dataset.label, row.querySelector('[data-testid=person-count]').textContent])"
        )
    )


def identify_on_page(driver: Any, photo: Path) -> list[Any]:
    """Upload `photo` through the page's file input; its faces as the page lists them."""
    by_test_id(driver, "identify-file").send_keys(str(photo))
    results = by_test_id(driver, "identify-results")
    wait(driver, lambda _: results.get_attribute("data-file") == photo.name)
    return results.find_elements(By.CSS_SELECTOR, "[data-testid=face]")


def shown_image(img: Any) -> Callable[[Any], bool]:
    """A wait's condition: the <img> has loaded its picture."""
    return lambda _: img.get_attribute("naturalWidth") not in (None, "0")


def calibrated(client: FaceSearchClient) -> bool:
    stats = client.stats()
    rule = stats.decision
    return rule is not None and rule.source == "calibrated" and rule.items == stats.count


def split(identities: dict[str, str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each person's photos to enroll (all but their last), and the held-out photo each."""
    by_person = photos_by_person(identities)
    return {p: f[:-1] for p, f in by_person.items()}, {p: f[-1] for p, f in by_person.items()}


def test_identify_enroll_rename_and_forget_through_the_page(
    browser: Any,
    start_server: Callable[..., RunningServer],
    faces_dir: Path,
    identities: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    running = start_server(http="127.0.0.1:0")
    enroll, held_out = split(identities)
    client = running.client()
    request.addfinalizer(client.close)
    quick = [p for p in sorted(enroll) if p not in (STRANGER, THROUGH_PAGE)]
    files = [f for p in quick for f in enroll[p]]
    results = client.add_images(
        [faces_dir / f for f in files], labels=[identities[f] for f in files]
    )
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]

    browser.get(running.http_url + "/")
    collection = by_test_id(browser, "collection")
    wait(browser, lambda _: "default" in collection.text)
    wait(browser, lambda _: len(people_on_page(browser)) == len(quick))
    assert people_on_page(browser)["p00"] == f"{len(enroll['p00'])} photos"

    # Enroll one person through the page's form (several files at once).
    by_test_id(browser, "enroll-name").send_keys(THROUGH_PAGE)
    chosen = [str(faces_dir / f) for f in enroll[THROUGH_PAGE]]
    by_test_id(browser, "enroll-files").send_keys("\n".join(chosen))
    by_test_id(browser, "enroll-submit").click()
    summary = wait(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid=enroll-summary]")
    )
    assert summary.text == f"{len(chosen)} of {len(chosen)} enrolled as {THROUGH_PAGE}."
    wait(browser, lambda _: THROUGH_PAGE in people_on_page(browser))
    assert people_on_page(browser)[THROUGH_PAGE] == f"{len(chosen)} photos"

    # The rule calibrates in the background once writes pause; the page's stats show it.
    wait(browser, lambda _: calibrated(client))
    stats = client.stats()
    rule = stats.decision
    assert rule is not None
    by_test_id(browser, "stats-refresh").click()
    shown = by_test_id(browser, "stats")
    wait(
        browser,
        lambda _: (
            shown.get_attribute("data-source") == "calibrated"
            and shown.get_attribute("data-count") == str(stats.count)
        ),
    )
    assert by_test_id(browser, "stat-count").text.startswith(f"{stats.count} (")
    assert f"{stats.count} items" in collection.text
    assert by_test_id(browser, "stat-ef").text == str(stats.ef)
    assert f"threshold {rule.threshold:.3f}" in by_test_id(browser, "stat-rule").text
    assert by_test_id(browser, "stat-far").text.endswith(f"(target {rule.target_far * 100:.2f}%)")
    assert "%" in by_test_id(browser, "stat-tar").text
    assert by_test_id(browser, "stat-calibrated-on").text.startswith(f"{rule.people} people")

    # Known people's held-out photos: named (p03 was enrolled through the page), with
    # their nearest people's thumbnails; strangers: whatever the server decides, which
    # with a calibrated rule is "unknown".
    for person in ("p00", THROUGH_PAGE, STRANGER):
        photo = faces_dir / held_out[person]
        expected = client.identify(image=photo, candidates=3).results
        faces = identify_on_page(browser, photo)
        assert len(faces) == len(expected) == 1, held_out[person]
        answer, face = expected[0], faces[0]
        name = face.find_element(By.CSS_SELECTOR, "[data-testid=face-name]").text
        assert name == (answer.person if answer.known else "unknown")
        assert face.get_attribute("data-known") == str(answer.known).lower()
        assert float(face.get_attribute("data-similarity")) == pytest.approx(answer.similarity)
        shown_candidates = face.find_elements(By.CSS_SELECTOR, "[data-testid=candidate]")
        assert [c.get_attribute("data-person") for c in shown_candidates] == [
            c.person for c in answer.candidates
        ]
        first = shown_candidates[0].find_element(By.TAG_NAME, "img")
        wait(browser, shown_image(first))
        boxes = browser.find_elements(By.CSS_SELECTOR, "[data-testid=box]")
        assert len(boxes) == 1 and boxes[0].text.endswith(name)
        if person == STRANGER:
            assert name == "unknown" and not answer.known
        else:
            assert name == person and answer.known
        assert "the calibrated rule" in by_test_id(browser, "identify-rule").text

    # A photo dropped on the drop zone (a real DataTransfer, as a file manager's drag makes)
    # is identified as a chosen one is.
    photo = faces_dir / held_out["p00"]
    browser.execute_script(
        """const [name, b64] = arguments;
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: "image/jpeg"}));
        const zone = document.querySelector("[data-testid=drop]");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));""",
        "dropped-" + photo.name,
        base64.b64encode(photo.read_bytes()).decode(),
    )
    results = by_test_id(browser, "identify-results")
    wait(browser, lambda _: results.get_attribute("data-file") == "dropped-" + photo.name)
    dropped = results.find_elements(By.CSS_SELECTOR, "[data-testid=face-name]")
    assert [face.text for face in dropped] == ["p00"]

    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = tmp_path / "page.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(PNG) and screenshot.stat().st_size > 1000

    # An error from the API is shown in the page.
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo")
    by_test_id(browser, "identify-file").send_keys(str(not_a_photo))
    error = by_test_id(browser, "error")
    wait(browser, lambda _: error.is_displayed() and "not a decodable image" in error.text)

    # Rename p01 to Ada, then forget Ada (confirming), through the page.
    row = browser.find_element(By.CSS_SELECTOR, "[data-testid=person][data-label=p01]")
    row.find_element(By.CSS_SELECTOR, "[data-testid=rename]").click()
    new_name = row.find_element(By.CSS_SELECTOR, "[data-testid=new-name]")
    new_name.clear()
    new_name.send_keys("Ada")
    row.find_element(By.CSS_SELECTOR, "[data-testid=rename-save]").click()
    wait(browser, lambda _: "Ada" in people_on_page(browser))
    listed = people_on_page(browser)
    assert "p01" not in listed and listed["Ada"] == f"{len(enroll['p01'])} photos"
    assert not error.is_displayed()
    assert "Ada" in {p.label for p in client.all_people()}

    row = browser.find_element(By.CSS_SELECTOR, "[data-testid=person][data-label=Ada]")
    row.find_element(By.CSS_SELECTOR, "[data-testid=forget]").click()
    confirm = wait(browser, expected_conditions.alert_is_present())
    assert "Forget Ada?" in confirm.text
    confirm.accept()
    wait(browser, lambda _: "Ada" not in people_on_page(browser))
    assert "forgot ada" in by_test_id(browser, "people-status").text.lower()
    assert {p.label for p in client.all_people()} == (set(enroll) - {STRANGER, "p01"})

    # A narrow screen: one column, nothing wider than the window.
    browser.set_window_size(390, 900)
    wait(
        browser,
        lambda d: d.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        ),
    )


def test_a_server_wanting_a_token_gets_it_from_the_page(
    browser: Any, start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    running = start_server(dim=8, model="", http="127.0.0.1:0", auth_token_file=token_file)
    browser.get(running.http_url + "/")
    form = by_test_id(browser, "token-form")
    error = by_test_id(browser, "error")
    wait(browser, lambda _: form.is_displayed() and "requires a token" in error.text)

    by_test_id(browser, "token").send_keys("wrong")
    by_test_id(browser, "token-save").click()
    wait(browser, lambda _: "not valid" in error.text)

    field = by_test_id(browser, "token")
    field.clear()
    field.send_keys("s3cret-token")
    by_test_id(browser, "token-save").click()
    collection = by_test_id(browser, "collection")
    wait(browser, lambda _: "default" in collection.text and not form.is_displayed())
    assert not error.is_displayed()
    assert browser.execute_script("return localStorage.getItem('facesearch.token')") == (
        "s3cret-token"
    )
    # A vector collection: the page says photos cannot be used here.
    assert by_test_id(browser, "identify-file").get_attribute("disabled") == "true"
    assert browser.find_element(By.ID, "vector-only").is_displayed()
    assert by_test_id(browser, "stat-count").text.startswith("0 (")
