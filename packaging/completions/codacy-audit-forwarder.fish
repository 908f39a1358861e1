# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_codacy_audit_forwarder_global_optspecs
    string join \n log-format= h/help V/version
end

function __fish_codacy_audit_forwarder_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_codacy_audit_forwarder_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_codacy_audit_forwarder_using_subcommand
    set -l cmd (__fish_codacy_audit_forwarder_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -s V -l version -d 'Print version'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "run" -d 'Run the daemon until SIGTERM/SIGINT (SIGHUP reloads the configuration)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "once" -d 'One full sync pass for every organization and sink, then exit (0 = all delivered)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "check" -d 'Validate the configuration, ask the API for each organization\'s last hour and probe every sink, changing nothing (exit 0 all good, 1 something fails, 2 configuration incomplete)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "demo" -d 'Run against the built-in Codacy API simulator, writing DIR/audit.ndjson'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "preview" -d 'Print Codacy events (JSON array, v3 envelope or NDJSON; stdin by default) in a format'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "export" -d 'Write one organization\'s audit log over [--from, --to) to a file or stdout, oldest first, in a format (csv for a spreadsheet); moves no checkpoint, so it runs beside the daemon'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "catalog" -d 'Print the action catalog (names, ECS/CEF/CIM classification) the encoders use'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "state" -d 'Inspect or move checkpoints'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "completions" -d 'Print a shell completion script (the packages install them)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "man" -d 'Print the manual page (roff; the packages install it as codacy-audit-forwarder(1))'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand run" -s c -l config -d 'Configuration file (TOML; see config/example.toml)' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand run" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand once" -s c -l config -d 'Configuration file (TOML; see config/example.toml)' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand once" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand once" -l json -d 'Print the outcome as one JSON object on stdout (shape in the README)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand once" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand check" -s c -l config -d 'Configuration file (TOML; see config/example.toml)' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand check" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand check" -l offline -d 'Validate the configuration and read every secret without contacting anything'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand check" -l json -d 'Print the report as one JSON object on stdout (shape in the README)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand demo" -l out -d 'Directory for audit.ndjson and the demo\'s state' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand demo" -l duration -d 'Stop after this long (e.g. 30s); default: until Ctrl-C or SIGTERM' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand demo" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand preview" -l format -d 'Output format' -r -f -a "json\t''
ecs\t''
cef\t''
csv\t''"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand preview" -l org -d 'Organization the events belong to (it is part of every event id)' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand preview" -l ecs-namespace -d 'ECS data_stream.namespace' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand preview" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand preview" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand export" -l config -d 'Configuration whose [codacy] settings (URL, token, limits) are used' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand export" -l org -d 'provider/name, e.g. gh/acme' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand export" -l from -d 'Start, inclusive: a date (2026-07-01, midnight UTC) or an RFC 3339 time' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand export" -l to -d 'End, exclusive: a date or an RFC 3339 time; default now' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand export" -l format -r -f -a "csv\t''
json\t''
ecs\t''
cef\t''"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand export" -l output -d 'Write to FILE (as FILE.partial, renamed when complete) instead of stdout' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand export" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand catalog" -l format -d 'Output format (CSV, the Splunk add-on\'s lookup)' -r -f -a "csv\t''"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand catalog" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand catalog" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and not __fish_seen_subcommand_from show reset help" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and not __fish_seen_subcommand_from show reset help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and not __fish_seen_subcommand_from show reset help" -f -a "show" -d 'A table per organization and sink: cursor, lag, ids in overlap, last error'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and not __fish_seen_subcommand_from show reset help" -f -a "reset" -d 'Move one checkpoint (replay from an earlier time, or skip ahead)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and not __fish_seen_subcommand_from show reset help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from show" -s c -l config -d 'Configuration file (TOML; see config/example.toml)' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from show" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from show" -l json -d 'Print one JSON object on stdout instead of the table (shape in the README)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from reset" -s c -l config -d 'Configuration file (TOML; see config/example.toml)' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from reset" -l org -d 'Organization as provider/name, e.g. gh/acme' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from reset" -l sink -d 'Sink name, as in the configuration' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from reset" -l to -d 'New cursor: an RFC 3339 time, e.g. 2024-07-01T00:00:00Z' -r
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from reset" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from reset" -l yes -d 'Proceed although the daemon is running or the time is past Codacy\'s retention'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from reset" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "show" -d 'A table per organization and sink: cursor, lag, ids in overlap, last error'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "reset" -d 'Move one checkpoint (replay from an earlier time, or skip ahead)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand completions" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand man" -l dir -d 'Write every page instead (codacy-audit-forwarder.1 and one per command, e.g. codacy-audit-forwarder-check.1) into this existing directory' -r -F
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand man" -l log-format -d 'Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug)' -r -f -a "plain\t'Human-readable lines (journald-friendly under systemd)'
json\t'One JSON object per line, for shipping to a log platform'"
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "run" -d 'Run the daemon until SIGTERM/SIGINT (SIGHUP reloads the configuration)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "once" -d 'One full sync pass for every organization and sink, then exit (0 = all delivered)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "check" -d 'Validate the configuration, ask the API for each organization\'s last hour and probe every sink, changing nothing (exit 0 all good, 1 something fails, 2 configuration incomplete)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "demo" -d 'Run against the built-in Codacy API simulator, writing DIR/audit.ndjson'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "preview" -d 'Print Codacy events (JSON array, v3 envelope or NDJSON; stdin by default) in a format'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "export" -d 'Write one organization\'s audit log over [--from, --to) to a file or stdout, oldest first, in a format (csv for a spreadsheet); moves no checkpoint, so it runs beside the daemon'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "catalog" -d 'Print the action catalog (names, ECS/CEF/CIM classification) the encoders use'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "state" -d 'Inspect or move checkpoints'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "completions" -d 'Print a shell completion script (the packages install them)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "man" -d 'Print the manual page (roff; the packages install it as codacy-audit-forwarder(1))'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and not __fish_seen_subcommand_from run once check demo preview export catalog state completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and __fish_seen_subcommand_from state" -f -a "show" -d 'A table per organization and sink: cursor, lag, ids in overlap, last error'
complete -c codacy-audit-forwarder -n "__fish_codacy_audit_forwarder_using_subcommand help; and __fish_seen_subcommand_from state" -f -a "reset" -d 'Move one checkpoint (replay from an earlier time, or skip ahead)'
