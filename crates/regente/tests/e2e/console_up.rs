//! The console of `regente up`, as a newcomer meets it: the printed address
//! shows the example robots and the local runtime online, and a user the admin
//! creates runs an example from its form and watches it to the end.

use std::time::Duration;

use crate::console::{log_lines, sign_in, status};
use crate::console_browser::Browser;
use crate::support::scratch;
use crate::up::start_up;

#[test]
#[cfg_attr(
    not(regente_chromium),
    ignore = "SKIPPED: needs chromium and chromium-driver (apt-get install chromium chromium-driver)"
)]
fn console_of_regente_up_shows_the_examples_and_lets_a_new_user_watch_a_run() {
    let cwd = scratch();
    let (_up, welcome) = start_up(cwd.path(), &[], None, Duration::from_secs(90));
    let (admin, password) = welcome
        .admin
        .split_once(" / ")
        .expect("a first start prints the generated password");
    let base = welcome.console.trim_end_matches('/').to_owned();
    let browser =
        Browser::start("console_of_regente_up_shows_the_examples_and_lets_a_new_user_watch_a_run");
    browser.goto(&welcome.console);
    browser.wait("form[action='/login']");
    sign_in(&browser, &base, admin, password);

    // Every example up loaded, three where each one's needs are met.
    browser.goto(&format!("{base}/robots"));
    let mut shown: Vec<String> = browser
        .find_all("table.list tbody td:first-child a")
        .iter()
        .map(|link| browser.text(link))
        .collect();
    shown.sort();
    let mut loaded: Vec<String> = welcome
        .robots
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    loaded.sort();
    assert_eq!(shown, loaded);
    if welcome.missing.is_empty() {
        assert_eq!(shown.len(), 3, "{shown:?}");
    }

    browser.goto(&format!("{base}/runtimes"));
    browser.wait_until("the local runtime online", || {
        let row = browser.text_of("#runtimes tbody tr")?;
        (row.starts_with("local") && browser.text_of("[data-field='state']")? == "online")
            .then_some(())
    });

    // The admin makes a user for a newcomer.
    browser.goto(&format!("{base}/users"));
    browser.fill("#u-name", "newcomer");
    browser.fill("#u-password", "newcomer-password");
    browser.click_css("#u-role option[value='admin']");
    browser.click_css("form[action='/users'] button[type=submit]");
    browser.wait("tr[data-user='newcomer']");
    browser.click_css("form.signout button[type=submit]");
    browser.wait("form[action='/login']");
    sign_in(&browser, &base, "newcomer", "newcomer-password");

    // The newcomer runs the shell example and watches it to the end.
    let (_, shell) = welcome
        .robots
        .iter()
        .find(|(name, _)| name == "hello-shell")
        .expect("hello-shell loaded");
    browser.goto(&format!("{base}/robots/{shell}"));
    browser.fill("#var-NAME", "Console");
    browser.fill("#var-TIMES", "3");
    browser.click_css("form[action$='/run'] button[type=submit]");
    browser.wait("#execution");
    browser.wait_until("three greetings and FINISHED", || {
        let lines = log_lines(&browser);
        (status(&browser) == "FINISHED" && lines.len() == 3).then_some(lines)
    });
    assert_eq!(
        log_lines(&browser),
        [
            "hello, Console (1 of 3)",
            "hello, Console (2 of 3)",
            "hello, Console (3 of 3)"
        ]
    );
    assert!(browser
        .text_of("#return-value")
        .unwrap_or_default()
        .contains("\"greeted\": \"Console\""));
}
