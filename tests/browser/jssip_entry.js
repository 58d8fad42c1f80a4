/**
 * Entry of the browser bundle of JsSIP (npm `jssip`, whose package ships no browser bundle,
 * only CommonJS in lib/). tests/support/browser.ts builds it with
 * `deno bundle --platform browser --format iife`; the page loads it and finds `window.JsSIP`.
 * @module
 */
import "./node_events_shim.js";
import JsSIP from "npm:jssip@3.13.8";

globalThis.JsSIP = JsSIP;
