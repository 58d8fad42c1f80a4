/**
 * A real browser for tests: Debian's headless Chromium (`apt-get install chromium`) driven by npm
 * `playwright-core` (`chromium.launch` with `executablePath`), a page server on 127.0.0.1, and
 * JsSIP (npm `jssip`) bundled for the browser with `deno bundle`.
 *
 * ```ts
 * await using site = servePage({ "/": pageHtml, "/jssip.js": await jssipBundle() });
 * await using browser = await launchChromium();
 * const page = await browser.newPage();
 * await page.goto(site.url);
 * ```
 *
 * Chromium talks to loopback only: background networking, component updates, sync and QUIC are
 * off, and host names other than 127.0.0.1 and localhost do not resolve. (A page that makes
 * WebRTC calls should gather no ICE candidates, e.g. with `iceTransportPolicy: "relay"` and no
 * TURN server, as tests/browser/page.html does: then no UDP socket is bound or used.)
 *
 * @module
 */
import { type Browser, type BrowserContext, chromium, type Page } from "npm:playwright-core@1.65.1";
import { REPO_ROOT } from "./sipedge_process.ts";

/**
 * Debian's Chromium (a wrapper script that runs /usr/lib/chromium/chromium); the environment
 * variable `SIPEDGE_CHROMIUM` overrides it.
 */
export const CHROMIUM_PATH: string = Deno.env.get("SIPEDGE_CHROMIUM") ?? "/usr/bin/chromium";

/**
 * Chromium's switches (playwright-core adds its own automation ones, and a fresh temporary
 * `--user-data-dir` per launch, removed on close). No `--disable-features` here: Chromium reads
 * only the last one, and playwright-core's turns off several features that reach the network.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  // Tests run as root in containers: no user namespaces for the sandbox.
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-default-apps",
  "--disable-breakpad",
  "--disable-domain-reliability",
  "--no-pings",
  // sipedge's wss listener has a self-signed certificate.
  "--ignore-certificate-errors",
  // No name resolution beyond loopback: nothing can reach out by name.
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
];

/** How long launching Chromium may take. */
export const LAUNCH_TIMEOUT_MS = 30_000;

/** How long closing the browser may take before its processes are killed. */
export const CLOSE_TIMEOUT_MS = 10_000;

/**
 * Why Chromium cannot run here, or undefined when it can (its executable is there).
 *
 * @returns a reason for a skipped test, naming the fix
 */
export function chromiumUnavailableReason(): string | undefined {
  try {
    const info = Deno.statSync(CHROMIUM_PATH);
    if (!info.isFile || info.mode === null || (info.mode & 0o111) === 0) {
      return `${CHROMIUM_PATH} is not an executable file`;
    }
    return undefined;
  } catch {
    return `Chromium is not installed: no ${CHROMIUM_PATH} (apt-get install -y chromium)`;
  }
}

/**
 * The pids of live processes whose command line has the argument `arg` (Linux /proc).
 *
 * @param arg an exact argument
 * @returns their process ids (zombies left out)
 */
function processesWithArgument(arg: string): number[] {
  const pids: number[] = [];
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync("/proc");
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      const args = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
      if (!args.includes(arg)) continue;
      if (/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${entry.name}/status`))) continue;
      pids.push(Number(entry.name));
    } catch {
      // Gone, or not readable.
    }
  }
  return pids;
}

/**
 * SIGKILLs every process with the argument `arg` until none is left (2 s at most).
 *
 * @param arg the marker argument of one launch
 * @returns how many processes were found alive at the first look
 */
async function killProcessesWithArgument(arg: string): Promise<number> {
  const first = processesWithArgument(arg).length;
  for (const deadline = Date.now() + 2000; Date.now() < deadline;) {
    const pids = processesWithArgument(arg);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return first;
}

/** A launched Chromium: `await using` closes it (and kills what is left, bounded). */
export interface TestBrowser extends AsyncDisposable {
  readonly browser: Browser;
  /** A new page in its own context (fresh cookies and storage). */
  newPage(): Promise<Page>;
  /**
   * Closes the browser: Playwright's close (at most {@linkcode CLOSE_TIMEOUT_MS}; it also removes
   * the temporary profile folder), then SIGKILL for any process of this launch still alive
   * (found by a marker argument). Safe to call more than once.
   */
  close(): Promise<void>;
}

/**
 * Launches headless Chromium ({@linkcode CHROMIUM_PATH}, {@linkcode CHROMIUM_ARGS}) through
 * playwright-core, with a fresh profile.
 *
 * @returns the browser
 */
export async function launchChromium(): Promise<TestBrowser> {
  // Chromium ignores switches it does not know: this one only names the launch's processes
  // (the browser and its renderer, GPU and utility children all carry it), so that whatever
  // survives a failed close can be found and killed.
  const marker = `--sipedge-test-browser=${crypto.randomUUID()}`;
  let browser: Browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_ARGS, marker],
      timeout: LAUNCH_TIMEOUT_MS,
      // The test process's own signal handling stays as it is.
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
    });
  } catch (error) {
    await killProcessesWithArgument(marker);
    throw error;
  }
  const contexts: BrowserContext[] = [];
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= (async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        browser.close().catch(() => {}),
        new Promise<void>((resolve) => timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)),
      ]);
      clearTimeout(timer);
      await killProcessesWithArgument(marker);
    })();
  return {
    browser,
    async newPage() {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      contexts.push(context);
      return await context.newPage();
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** A file the page server hands out. */
export interface PageFile {
  body: string;
  /** Content-Type (default from the path's extension: html, js, else text/plain). */
  type?: string;
}

/** A running page server, as returned by {@linkcode servePage}. */
export interface PageServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
  readonly port: number;
  /** The paths requested so far, in order. */
  readonly requested: string[];
  /** Stops the server (bounded: open keep-alive connections are cut after 2 s). */
  close(): Promise<void>;
}

function contentType(path: string): string {
  if (path === "/" || path.endsWith(".html")) return "text/html; charset=utf-8";
  if (path.endsWith(".js")) return "text/javascript; charset=utf-8";
  return "text/plain; charset=utf-8";
}

/**
 * Serves fixed files over HTTP on 127.0.0.1 (a free port); anything else is 404. An origin
 * of http://127.0.0.1 is a secure context, so the page has WebRTC.
 *
 * @param files by path (`/`, `/jssip.js`)
 * @returns the server
 */
export function servePage(files: Record<string, PageFile | string>): PageServer {
  const abort = new AbortController();
  const requested: string[] = [];
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: abort.signal,
    onListen: () => {},
  }, (request) => {
    const path = new URL(request.url).pathname;
    requested.push(path);
    const file = files[path];
    if (file === undefined) return new Response("not found", { status: 404 });
    const { body, type } = typeof file === "string" ? { body: file, type: undefined } : file;
    return new Response(body, {
      headers: { "content-type": type ?? contentType(path), "cache-control": "no-store" },
    });
  });
  const port = server.addr.port;
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= (async () => {
      abort.abort();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        server.finished,
        new Promise<void>((resolve) => timer = setTimeout(resolve, 2000)),
      ]);
      clearTimeout(timer);
    })();
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    requested,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** The folder of the browser test's page and bundle entry. */
export const BROWSER_DIR: string = `${REPO_ROOT}/tests/browser`;

/** How long bundling JsSIP may take (the first run downloads jssip and esbuild from npm). */
export const BUNDLE_TIMEOUT_MS = 180_000;

let bundled: Promise<string> | undefined;

/**
 * JsSIP for the browser: tests/browser/jssip_entry.js (npm `jssip`, pinned there) bundled with
 * `deno bundle --platform browser --format iife` into one script that sets `window.JsSIP`.
 * Built once per test process, in a temporary folder.
 *
 * @returns the script's text
 */
export function jssipBundle(): Promise<string> {
  return bundled ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "sipedge_jssip_" });
    try {
      const output = `${dir}/jssip.js`;
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "bundle",
          "--quiet",
          "--platform",
          "browser",
          "--format",
          "iife",
          "--output",
          output,
          `${BROWSER_DIR}/jssip_entry.js`,
        ],
        cwd: REPO_ROOT,
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }, BUNDLE_TIMEOUT_MS);
      const result = await child.output();
      clearTimeout(timer);
      const text = new TextDecoder().decode(result.stdout) +
        new TextDecoder().decode(result.stderr);
      if (!result.success) {
        throw new Error(`deno bundle of JsSIP failed (code ${result.code}):\n${text}`);
      }
      return await Deno.readTextFile(output);
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  })();
}
