/**
 * Command-line parsing for `sipedge`. Kept apart from main.ts so that it can be tested.
 * @module
 */
import { parseListenAddress } from "./config/schema.ts";
import { parseSipUri } from "./sip/uri.ts";

/** What the command line asks for. */
export interface CliOptions {
  config?: string;
  listen: string[];
  forward?: string;
  workers?: number;
  /** Control API address, or "" for off. */
  control?: string;
  logLevel?: string;
  /** `--log-format`: `text` or `json`. */
  logFormat?: "text" | "json";
  checkConfig: boolean;
  version: boolean;
  help: boolean;
}

/** `--help` text. */
export const USAGE = `Usage: sipedge [options]

SIP proxy for TCP (and TLS): reads, frames, parses, routes and forwards SIP messages.

Options:
  --config FILE       config file (default: ./config.toml if it exists, else built-in
                      defaults: tcp:127.0.0.1:5060, route by Request-URI)
  --listen ADDR       listen on TRANSPORT:HOST:PORT, e.g. tcp:127.0.0.1:5060 or tcp:[::1]:5060;
                      repeatable; replaces the config's [[listen]] entries
  --forward URI       send every request to this upstream, e.g. "sip:10.0.0.5:5060;transport=tcp"
                      (requests from the upstream's host are routed by Request-URI)
  --workers N         reader workers (0 = one per CPU)
  --control ADDR      control API on HOST:PORT (port 0: any free port), or "off"
  --log-level LEVEL   trace, debug, info, warning, error or fatal
  --log-format FMT    text (one readable line per record) or json (JSON Lines)
  --check-config      validate the config (and options), print errors, exit (1 when invalid)
  --version           print the version and exit
  --help              print this help and exit

Control a running sipedge (status, connections, stats, blacklist, reload, ...):
  sipedge ctl help
`;

/**
 * Walks command-line arguments as GNU-style options: `--name value` or `--name=value`, flags
 * without a value. Used by `sipedge` and `sipedge ctl`; errors are meant for the user.
 */
export class OptionReader {
  /** The current argument as given. */
  arg = "";
  /** Its option name (`--listen` of `--listen=x`), or the argument itself. */
  name = "";
  #args: string[];
  #i = -1;
  #eq = -1;

  constructor(args: string[]) {
    this.#args = args;
  }

  /** Moves to the next argument; false when there is none. */
  next(): boolean {
    if (++this.#i >= this.#args.length) return false;
    this.arg = this.#args[this.#i];
    this.#eq = this.arg.startsWith("--") ? this.arg.indexOf("=") : -1;
    this.name = this.#eq < 0 ? this.arg : this.arg.slice(0, this.#eq);
    return true;
  }

  /** The option's value: after `=`, else the next argument (consumed). */
  value(): string {
    if (this.#eq >= 0) return this.arg.slice(this.#eq + 1);
    const next = this.#args[++this.#i];
    if (next === undefined) throw new Error(`${this.name} needs a value`);
    return next;
  }

  /** A flag: an error when given a value. */
  flag(): true {
    if (this.#eq >= 0) throw new Error(`${this.name} takes no value`);
    return true;
  }
}

/** Parses `args`; throws an Error whose message is meant for the user. */
export function parseCli(args: string[]): CliOptions {
  const options: CliOptions = { listen: [], checkConfig: false, version: false, help: false };
  const reader = new OptionReader(args);
  const value = () => reader.value();
  const flag = () => reader.flag();
  while (reader.next()) {
    switch (reader.name) {
      case "--config":
        options.config = value();
        break;
      case "--listen": {
        const address = value();
        if (parseListenAddress(address) === undefined) {
          throw new Error(
            `--listen ${address}: expected TRANSPORT:HOST:PORT like tcp:127.0.0.1:5060`,
          );
        }
        options.listen.push(address);
        break;
      }
      case "--forward": {
        const uri = value();
        if (parseSipUri(uri) === undefined) {
          throw new Error(
            `--forward ${uri}: expected a sip: URI like sip:127.0.0.1:5070;transport=tcp`,
          );
        }
        options.forward = uri;
        break;
      }
      case "--workers": {
        const text = value();
        if (!/^[0-9]{1,3}$/.test(text) || Number(text) > 256) {
          throw new Error(`--workers ${text}: expected a number from 0 to 256`);
        }
        options.workers = Number(text);
        break;
      }
      case "--control": {
        const address = value();
        if (address === "off") {
          options.control = "";
        } else if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/.test(address)) {
          throw new Error(`--control ${address}: expected HOST:PORT like 127.0.0.1:8060, or off`);
        } else {
          options.control = address;
        }
        break;
      }
      case "--log-level": {
        const level = value();
        if (!["trace", "debug", "info", "warning", "error", "fatal"].includes(level)) {
          throw new Error(
            `--log-level ${level}: expected trace, debug, info, warning, error or fatal`,
          );
        }
        options.logLevel = level;
        break;
      }
      case "--log-format": {
        const format = value();
        if (format !== "text" && format !== "json") {
          throw new Error(`--log-format ${format}: expected text or json`);
        }
        options.logFormat = format;
        break;
      }
      case "--check-config":
        options.checkConfig = flag();
        break;
      case "--version":
        options.version = flag();
        break;
      case "--help":
      case "-h":
        options.help = flag();
        break;
      default:
        throw new Error(`unknown option ${reader.arg} (see --help)`);
    }
  }
  return options;
}
