//! The man page shipped in `packaging/man/ferromq.1` is the one clap_mangen makes
//! from the command line's definition: regenerated here and compared, so it never
//! goes stale (`FERROMQ_UPDATE_MAN=1 cargo test --test man` rewrites it).

#[test]
fn the_shipped_man_page_is_generated_from_the_command_line() {
    let mut page = Vec::new();
    clap_mangen::Man::new(ferromq::cli::command())
        .render(&mut page)
        .expect("render the man page");
    // One page per subcommand would be a dozen files; the main page lists them,
    // and each subcommand's options follow it.
    for sub in ferromq::cli::command().get_subcommands() {
        let mut sub_page = Vec::new();
        clap_mangen::Man::new(sub.clone())
            .render_options_section(&mut sub_page)
            .expect("render a subcommand's options");
        if !sub_page.is_empty() && sub.get_arguments().next().is_some() {
            page.extend_from_slice(
                format!(".SH \"FERROMQ {}\"\n", sub.get_name().to_uppercase()).as_bytes(),
            );
            if let Some(about) = sub.get_about() {
                page.extend_from_slice(format!("{about}\n").as_bytes());
            }
            // The options section's own heading is replaced by the subcommand's.
            let text = String::from_utf8(sub_page).expect("roff is text");
            let body = text.split_once('\n').map_or("", |(_, rest)| rest);
            page.extend_from_slice(body.as_bytes());
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/man/ferromq.1");
    let page = String::from_utf8(page).expect("roff is text");
    if std::env::var_os("FERROMQ_UPDATE_MAN").is_some() {
        std::fs::write(path, &page).expect("write the man page");
    }
    let shipped = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        page.contains(".SH \"FERROMQ SERVE\""),
        "serve's options are there"
    );
    assert!(
        page.contains("FERROMQ_MAX_BODY"),
        "with their environment variables"
    );
    assert!(
        shipped == page,
        "packaging/man/ferromq.1 is stale: FERROMQ_UPDATE_MAN=1 cargo test --test man"
    );
}

#[test]
fn every_argument_of_every_command_has_help() {
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") || arg.is_hide_set() {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(format!("{path} {} (the command)", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&ferromq::cli::command(), "ferromq", &mut missing);
    assert!(missing.is_empty(), "arguments without help: {missing:#?}");
}
