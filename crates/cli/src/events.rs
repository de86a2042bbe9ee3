//! `ktwin events`: prints the event grammar of `ktwin-events` (types, topics, routing keys, name
//! rules) for given names, so SDKs in other languages can be checked against the Rust side
//! (the Python SDK's tests compare their names with this output).

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ktwin_events::{
    EventKind, EventType, JSON_CONTENT_TYPE, SPEC_VERSION, TYPE_PREFIX, Topic, TopicKind,
    validate_name,
};
use serde_json::{Value, json};

/// Output format of `ktwin events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventsFormat {
    /// One `key: value` line per name.
    Text,
    /// One JSON document.
    Json,
}

/// Print the ktwin event grammar: the types, topics and routing keys of the given names, and
/// whether names and types are valid. Exits 1 when any given name or type is invalid.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// A twin interface, e.g. `city-pole`: prints its event types.
    #[arg(long)]
    pub interface: Option<String>,
    /// A twin instance, e.g. `city-pole-nb001-p00007`: with `--interface`, prints its topics.
    #[arg(long)]
    pub instance: Option<String>,
    /// A command name, e.g. `updateAirQualityIndex`: with `--interface`, prints its type.
    #[arg(long)]
    pub command: Option<String>,
    /// An event type to parse (repeatable), e.g. `ktwin.command.city-pole.DoIt`.
    #[arg(long = "parse", value_name = "TYPE")]
    pub parse: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EventsFormat::Text)]
    pub format: EventsFormat,
}

const KINDS: [EventKind; 4] = [
    EventKind::Real,
    EventKind::Virtual,
    EventKind::Store,
    EventKind::Command,
];

/// `{"what", "value", "valid", "error"?}` for each given name.
fn checked_names(args: &EventsArgs) -> Vec<Value> {
    [
        ("interface", &args.interface),
        ("instance", &args.instance),
        ("command", &args.command),
    ]
    .into_iter()
    .filter_map(|(what, value)| value.as_deref().map(|v| (what, v)))
    .map(|(what, value)| match validate_name(what, value) {
        Ok(()) => json!({"what": what, "value": value, "valid": true}),
        Err(err) => json!({"what": what, "value": value, "valid": false, "error": err.to_string()}),
    })
    .collect()
}

/// The types of `interface` (and of its command), by kind.
fn types(interface: &str, command: Option<&str>) -> Value {
    let mut types = serde_json::Map::new();
    for kind in KINDS {
        let ty = match (kind, command) {
            (EventKind::Command, Some(command)) => EventType::command(interface, command),
            (EventKind::Command, None) => continue,
            (kind, _) => EventType::plain(kind, interface),
        };
        if let Ok(ty) = ty {
            types.insert(kind.as_str().to_owned(), json!(ty.to_string()));
        }
    }
    Value::Object(types)
}

/// The device topics of `instance`, by direction.
fn topics(interface: &str, instance: &str) -> Value {
    let mut topics = serde_json::Map::new();
    for (name, kind) in [("real", TopicKind::Real), ("virtual", TopicKind::Virtual)] {
        if let Ok(topic) = Topic::new(kind, interface, instance) {
            topics.insert(
                name.to_owned(),
                json!({
                    "mqtt": topic.mqtt_topic(),
                    "routingKey": topic.routing_key(),
                    "eventType": topic.event_type().to_string(),
                    "mqttFilter": kind.mqtt_filter(),
                    "routingKeyPattern": kind.routing_key_pattern(interface).ok(),
                }),
            );
        }
    }
    Value::Object(topics)
}

/// `{"input", "valid", ...}` for one type to parse.
fn parsed(input: &str) -> Value {
    match input.parse::<EventType>() {
        Ok(ty) => json!({
            "input": input,
            "valid": true,
            "canonical": ty.to_string(),
            "kind": ty.kind().as_str(),
            "interface": ty.interface(),
            "command": ty.command_name(),
        }),
        Err(err) => json!({"input": input, "valid": false, "error": err.to_string()}),
    }
}

/// The whole report as JSON.
pub fn report(args: &EventsArgs) -> Value {
    let names = checked_names(args);
    let all_valid = names.iter().all(|n| n["valid"] == true);
    let mut report = json!({
        "typePrefix": TYPE_PREFIX,
        "specVersion": SPEC_VERSION,
        "contentType": JSON_CONTENT_TYPE,
        "kinds": KINDS.map(|k| json!({"kind": k.as_str(), "typePrefix": k.type_prefix()})),
        "names": names,
        "parsed": args.parse.iter().map(|t| parsed(t)).collect::<Vec<_>>(),
    });
    if let (Some(interface), true) = (&args.interface, all_valid) {
        report["types"] = types(interface, args.command.as_deref());
        if let Some(instance) = &args.instance {
            report["topics"] = topics(interface, instance);
        }
    }
    report
}

/// Flattens a JSON value into `path: value` lines.
fn text_lines(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => map.iter().for_each(|(key, v)| {
            text_lines(&join(prefix, key), v, out);
        }),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| {
            text_lines(&join(prefix, &i.to_string()), v, out);
        }),
        Value::String(text) => out.push(format!("{prefix}: {text}")),
        other => out.push(format!("{prefix}: {other}")),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Runs `ktwin events`.
pub fn run(args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let report = report(args);
    match args.format {
        EventsFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        EventsFormat::Text => {
            let mut lines = Vec::new();
            text_lines("", &report, &mut lines);
            println!("{}", lines.join("\n"));
        }
    }
    let invalid = |items: &Value| {
        items
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["valid"] == false))
    };
    Ok(if invalid(&report["names"]) || invalid(&report["parsed"]) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(interface: &str, instance: &str, command: &str, parse: &[&str]) -> EventsArgs {
        EventsArgs {
            interface: Some(interface.into()),
            instance: Some(instance.into()),
            command: Some(command.into()),
            parse: parse.iter().map(|s| s.to_string()).collect(),
            format: EventsFormat::Json,
        }
    }

    #[test]
    fn reports_the_grammar_of_valid_names() {
        let report = report(&args("city-pole", "pole-1", "DoIt", &["ktwin.real.x"]));
        assert_eq!(report["types"]["command"], "ktwin.command.city-pole.doit");
        assert_eq!(report["types"]["store"], "ktwin.store.city-pole");
        assert_eq!(
            report["topics"]["virtual"]["mqtt"],
            "ktwin/virtual/city-pole/pole-1"
        );
        assert_eq!(
            report["topics"]["real"]["routingKey"],
            "ktwin.real.city-pole.pole-1"
        );
        assert_eq!(report["parsed"][0]["kind"], "real");
    }

    #[test]
    fn invalid_names_and_types_are_reported_not_formatted() {
        let report = report(&args("a.b", "x", "c", &["ktwin.real"]));
        assert_eq!(report["names"][0]["valid"], false);
        assert!(
            report["names"][0]["error"]
                .as_str()
                .unwrap()
                .contains("invalid interface")
        );
        assert!(report.get("types").is_none());
        assert_eq!(report["parsed"][0]["valid"], false);
    }
}
