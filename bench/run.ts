#!/usr/bin/env node
import { parseArgs } from "node:util";
import { benchAgent } from "./agent.js";
import { benchBootstrap } from "./bootstrap.js";
import { benchFormat } from "./format.js";
import { benchHostile } from "./hostile.js";
import { benchMaster } from "./master.js";
import { benchProvider } from "./provider.js";
import { benchSelfHosting } from "./self-hosting.js";
import { benchSlap } from "./slap.js";
import { benchSlaposFormat } from "./slapos-format.js";

// `npm run bench -- master [--computers N] [--partitions N] [--requests N] [--concurrency N]
//  [--pollers N] [--seconds N]`, `npm run bench -- slap [--partitions N] [--concurrency N]
//  [--seconds N]`, `npm run bench -- format [--partitions N]` and `npm run bench -- agent
//  [--partitions N] [--requests N]`, `npm run bench -- bootstrap [--partitions N]`, `npm run bench --
//  provider [--requests N]` (N instances, default 20; the last four as root), `npm run bench -- hostile
//  [--partitions N] [--concurrency N] [--seconds N]` (readers, default 4), `npm run bench -- self-hosting
//  [--computers N] [--seconds N]` (N hosts, default 3, the master on the first; S seconds of quiet
//  before reading memory, default 60; as root): print a summary and the JSON figures for bench/README.md.

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    computers: { type: "string", default: "10000" },
    partitions: { type: "string", default: "100" },
    requests: { type: "string", default: "5000" },
    concurrency: { type: "string", default: "32" },
    pollers: { type: "string", default: "200" },
    seconds: { type: "string", default: "10" },
  },
});

const which = positionals[0] ?? "master";
const log = (line: string) => console.error(`bench: ${line}`);

if (which === "slap") {
  const venv = process.env.SLAPOS_VENV;
  if (!venv) {
    console.error("set SLAPOS_VENV (or run through scripts/with-env.sh): the real slapproxy is the peer");
    process.exit(2);
  }
  const result = await benchSlap(
    {
      venv,
      partitions: Number(values.partitions),
      readers: Number(values.concurrency),
      seconds: Number(values.seconds),
    },
    log,
  );
  const line = (name: string, figures: typeof result.master) =>
    `${name}: ${figures.perSecond.toFixed(0)} getFullComputerInformation/s, p50 ${figures.latency.p50} ms p99 ${figures.latency.p99} ms (${figures.bytes} bytes)`;
  console.log(
    [
      line("slapproxy", result.slapproxy),
      line("master", result.master),
      `ratio: ${result.ratio.toFixed(1)}x`,
      JSON.stringify(result),
    ].join("\n"),
  );
  process.exit(0);
}
if (which === "hostile") {
  const readers = values.concurrency === "32" ? 4 : Number(values.concurrency);
  const result = await benchHostile(
    { partitions: Number(values.partitions), readers, seconds: Number(values.seconds) },
    log,
  );
  const line = (name: string, phase: typeof result.alone) =>
    `${name}: reader p50 ${phase.latency.p50} ms p99 ${phase.latency.p99} ms (${phase.reads} reads), master peak RSS ${phase.peakRssMb} MB${
      phase.hostile
        ? `; hostile bodies ${phase.hostile.posted}, answered ${JSON.stringify(phase.hostile.statuses)} in p50 ${phase.hostile.latency.p50} ms p99 ${phase.hostile.latency.p99} ms`
        : ""
    }`;
  console.log(
    [
      line("alone", result.alone),
      line("8 callers posting reference bombs and nested JSON", result.bombAndDeepJson),
      line("8 callers posting the largest body the decoder reads to its end", result.largestDecodable),
      line("8 callers posting as large a JSON body (for comparison)", result.largestJson),
      `master RSS: ${result.masterRss.currentMb} MB now, ${result.masterRss.peakMb} MB peak`,
      JSON.stringify(result),
    ].join("\n"),
  );
  process.exit(0);
}
const wheelhouse = process.env.SLAPOS_WHEELHOUSE;
if ((which === "bootstrap" || which === "provider" || which === "self-hosting") && !wheelhouse) {
  console.error(
    "set SLAPOS_WHEELHOUSE (or run through scripts/with-env.sh): the wheels of a node's Python environment",
  );
  process.exit(2);
}
if (which === "provider") {
  const instances = values.requests === "5000" ? 20 : Number(values.requests);
  const result = await benchProvider({ instances }, log);
  console.log(
    [
      `pulumi up, 1 computer x ${instances} instances from a bare host: ${result.firstUpMs} ms`,
      `no-op preview: ${result.noOpPreviewMs} ms; no-op up: ${result.noOpUpMs} ms`,
      `up changing every instance's parameters: ${result.parameterUpdateUpMs} ms; destroy: ${result.destroyMs} ms`,
      JSON.stringify(result),
    ].join("\n"),
  );
  process.exit(0);
}
if (which === "self-hosting") {
  const hosts = values.computers === "10000" ? 3 : Number(values.computers);
  const quietSeconds = values.seconds === "10" ? 60 : Number(values.seconds);
  const result = await benchSelfHosting({ hosts, quietSeconds }, log);
  console.log(
    [
      `bare hosts -> self-hosted master answering (its PostgreSQL instance included): ${result.masterUpMs} ms`,
      `-> ${hosts - 1} more nodes and their web instances answering: ${result.instancesUpMs} ms; no-op up ${result.noOpUpMs} ms; destroy ${result.destroyMs} ms`,
      `idle RSS: master ${result.idleRssMb.master} MB, relay ${result.idleRssMb.relay} MB, PostgreSQL ${result.idleRssMb.database} MB`,
      JSON.stringify(result),
    ].join("\n"),
  );
  process.exit(0);
}
if (which === "bootstrap" && wheelhouse) {
  const partitions = values.partitions === "100" ? 10 : Number(values.partitions);
  const result = await benchBootstrap({ partitions, wheelhouse }, log);
  console.log(
    [
      `bootstrap of a fresh host (${partitions} partitions): ${result.firstRunMs} ms (${result.commandsFirst} commands); re-run ${result.reRunMs} ms (${result.commandsReRun} commands)`,
      JSON.stringify(result),
    ].join("\n"),
  );
  process.exit(0);
}
if (which === "format" || which === "agent") {
  const venv = process.env.SLAPOS_VENV;
  if (!venv) {
    console.error("set SLAPOS_VENV (or run through scripts/with-env.sh): the node's Python environment");
    process.exit(2);
  }
  const partitions = Number(values.partitions);
  if (which === "format") {
    const ours = await benchFormat(partitions, log);
    const slapos = await benchSlaposFormat({ partitions, venv }, log);
    console.log(
      [
        `slap node format: ${partitions} partitions in ${ours.firstRunMs} ms (${ours.firstRunWallMs} ms with node's start-up), no-op re-run ${ours.reRunMs} ms (${ours.reRunWallMs} ms)`,
        `slapos node format: ${partitions} partitions in ${slapos.firstRunMs} ms, re-run ${slapos.reRunMs} ms`,
        JSON.stringify({ ours, slapos }),
      ].join("\n"),
    );
  } else {
    const requests = values.requests === "5000" ? 10 : Number(values.requests);
    const result = await benchAgent({ partitions, requests, venv }, log);
    console.log(
      [
        `request -> started with its URL published (release installed): p50 ${result.requestToStarted.p50} ms p90 ${result.requestToStarted.p90} ms max ${result.requestToStarted.max} ms over ${requests} requests`,
        `idle agent RSS with ${partitions} partitions and ${result.instances} instances: ${result.idleRssMb.min}-${result.idleRssMb.max} MB`,
        JSON.stringify(result),
      ].join("\n"),
    );
  }
  process.exit(0);
}
if (which !== "master") {
  console.error(
    `unknown benchmark '${which}'; available: master, slap, format, agent, bootstrap, provider, hostile, self-hosting`,
  );
  process.exit(2);
}
const databaseUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
if (!databaseUrl) {
  console.error("set BENCH_DATABASE_URL (or run through scripts/with-env.sh, which sets TEST_DATABASE_URL)");
  process.exit(2);
}
const result = await benchMaster(
  {
    databaseUrl,
    computers: Number(values.computers),
    partitionsPerComputer: Number(values.partitions),
    requests: Number(values.requests),
    concurrency: Number(values.concurrency),
    pollers: Number(values.pollers),
    pollSeconds: Number(values.seconds),
  },
  log,
);
const { allocation, desiredState, masterRss } = result;
console.log(
  [
    `allocation: ${allocation.perSecond.toFixed(0)} requests/s (${allocation.requests} in ${allocation.seconds.toFixed(1)} s), latency p50 ${allocation.latency.p50} ms p99 ${allocation.latency.p99} ms, double allocations: ${allocation.doubleAllocations}`,
    `desired state (${desiredState.bytes} bytes): closed loop ${desiredState.closedLoop.readers} readers ${desiredState.closedLoop.perSecond.toFixed(0)} reads/s p50 ${desiredState.closedLoop.latency.p50} ms p99 ${desiredState.closedLoop.latency.p99} ms`,
    `desired state, ${desiredState.pollers.pollers} pollers at ~1 read/s each: ${desiredState.pollers.perSecond.toFixed(0)} reads/s p50 ${desiredState.pollers.latency.p50} ms p99 ${desiredState.pollers.latency.p99} ms`,
    `long poll, ${desiredState.longPollWake.pollers} nodes waiting: change to answer p50 ${desiredState.longPollWake.latency.p50} ms p99 ${desiredState.longPollWake.latency.p99} ms`,
    `master RSS: ${masterRss.currentMb} MB now, ${masterRss.peakMb} MB peak`,
    JSON.stringify(result),
  ].join("\n"),
);
