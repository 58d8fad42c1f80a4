/**
 * Which plugin a hook came from, so that an exception thrown by a plugin is reported with the
 * plugin's name. The worker engine tags what it collects from plugin instances (routers,
 * failure listeners); the code that calls a hook catches what it throws. Tagging is a WeakMap
 * entry: nothing is added to the hot path, the name is only looked up when a hook threw.
 * @module
 */
import type { SendFailureEvent, WorkerPlugin } from "./types.ts";

const owners = new WeakMap<object, string>();

/** Records that `hook` (a router, ...) belongs to plugin `name`; returns it unchanged. */
export function tagPlugin<T extends object>(hook: T, name: string): T {
  owners.set(hook, name);
  return hook;
}

/** The name of the plugin `hook` was tagged with, or undefined. */
export function pluginOf(hook: object): string | undefined {
  return owners.get(hook);
}

/**
 * A plugin's `onSendFailure`, called on its instance; an exception comes out as an error whose
 * message names the plugin and the hook (`plugin NAME: onSendFailure() threw: ...`), for the
 * connection manager to log.
 */
export function failureListenerOf(
  name: string,
  instance: WorkerPlugin,
): (event: SendFailureEvent) => void {
  const hook = instance.onSendFailure!;
  return (event) => {
    try {
      hook.call(instance, event);
    } catch (error) {
      throw new Error(`plugin ${name}: onSendFailure() threw: ${describeError(error)}`);
    }
  };
}

/** An exception as one line of text (non-Error values too). */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  try {
    return String(error);
  } catch {
    return "(unprintable exception)";
  }
}
