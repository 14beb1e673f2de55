import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import type { MasterSettings } from "./master.js";

/** The resource kinds whose providers live in `providers/`. */
export type ResourceKind =
  | "computer"
  | "partition"
  | "software-release"
  | "software-instance"
  | "self-hosted-master";

// The compiled providers, whether this module runs built (dist/provider) or from source (tests).
const PROVIDERS_PATH = fileURLToPath(
  new URL(
    import.meta.url.includes("/dist/") ? "./providers/index.js" : "../dist/provider/providers/index.js",
    import.meta.url,
  ),
);

/**
 * The provider the engine stores with each resource (`__provider`) and runs in its plugin process.
 *
 * It captures two strings and nothing else: the code is loaded at call time from the installed
 * package (`providers/`), so no credential, client or module graph is ever serialized into the
 * state, and a new version of the package takes effect without changing what the state holds.
 * Settings from the stack's config (`slapos:*`) arrive through `configure`, in the plugin process.
 */
export function delegatingProvider(kind: ResourceKind): pulumi.dynamic.ResourceProvider {
  // One object per kind: the SDK serializes each provider object once, and serializing is the
  // slowest part of declaring a resource.
  let provider = delegatingProviders.get(kind);
  if (!provider) {
    provider = makeDelegatingProvider(kind);
    delegatingProviders.set(kind, provider);
  }
  return provider;
}

const delegatingProviders = new Map<ResourceKind, pulumi.dynamic.ResourceProvider>();

function makeDelegatingProvider(kind: ResourceKind): pulumi.dynamic.ResourceProvider {
  const providersPath = PROVIDERS_PATH;
  // The serializer gives each method its own copy of captured variables, so what `configure`
  // receives is shared through the plugin process (one stack per process).
  const shared = globalThis as { slaposStackSettings?: Record<string, string | undefined> };
  // require, not import(): test runners rewrite import() in the code Pulumi serializes, and Node
  // (20.19+, 22.12+) requires ES modules without top-level await.
  const load = (): pulumi.dynamic.ResourceProvider => {
    let providers: { providerFor(kind: string, config: object): pulumi.dynamic.ResourceProvider };
    try {
      providers = require(providersPath);
    } catch (recorded) {
      // The package moved since the state recorded it: the project's own copy serves.
      try {
        providers = require(require.resolve("pulumi-slapos/provider/providers", { paths: [process.cwd()] }));
      } catch {
        throw recorded;
      }
    }
    return providers.providerFor(kind, shared.slaposStackSettings ?? {});
  };
  // The engine's structs take no `undefined`: absent it is.
  const plain = <T>(result: T): T => JSON.parse(JSON.stringify(result));
  return {
    async configure(request) {
      const keys = ["masterUrl", "caCertificate", "certificate", "privateKey"];
      shared.slaposStackSettings = Object.fromEntries(
        keys.map((key) => [key, request.config.get(`slapos:${key}`)]),
      );
    },
    async check(olds, news) {
      const provider = load();
      return plain(provider.check ? await provider.check(olds, news) : { inputs: news });
    },
    async diff(id, olds, news) {
      const provider = load();
      const result = provider.diff ? await provider.diff(id, olds, news) : {};
      // A provider recorded at another place: an update (no other effect) records the new one.
      if (!result.changes && olds.__provider !== news.__provider) return { ...result, changes: true };
      return result;
    },
    async create(inputs) {
      try {
        return plain(await load().create(inputs));
      } catch (error) {
        // Created but not ready: the state keeps it, with the provider that can delete it.
        const partial = error as { id?: string; properties?: Record<string, unknown> };
        if (partial.id) partial.properties = plain({ ...partial.properties, __provider: inputs.__provider });
        throw error;
      }
    },
    async read(id, props) {
      const provider = load();
      return plain(provider.read ? await provider.read(id, props) : { id, props });
    },
    async update(id, olds, news) {
      const provider = load();
      return plain(provider.update ? await provider.update(id, olds, news) : { outs: news });
    },
    async delete(id, props) {
      const provider = load();
      if (provider.delete) await provider.delete(id, props);
    },
  };
}

/** `customTimeouts` as seconds: the engine does not pass them to dynamic providers, so they travel as an input. */
export interface Timeouts {
  create?: number;
  update?: number;
  delete?: number;
}

const UNIT_SECONDS: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };

/** Go-style durations as customTimeouts take them: "90s", "10m", "1h30m". */
export function timeoutsOf(custom: pulumi.CustomTimeouts | undefined): Timeouts {
  const seconds = (duration: string | undefined): number | undefined => {
    if (!duration) return undefined;
    const parts = [...duration.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)];
    if (parts.length === 0 || parts.map((part) => part[0]).join("") !== duration) {
      throw new Error(`customTimeouts: '${duration}' is not a duration like "90s", "10m" or "1h30m"`);
    }
    return parts.reduce(
      (total, [, value, unit]) => total + Number(value) * (UNIT_SECONDS[unit ?? "s"] ?? 1),
      0,
    );
  };
  return {
    create: seconds(custom?.create),
    update: seconds(custom?.update),
    delete: seconds(custom?.delete),
  };
}

/**
 * What every resource of ours shares: the provider of its kind, the `master` input kept secret,
 * `customTimeouts` passed on as an input, and the outputs that must stay secret.
 */
export abstract class SlaposResource extends pulumi.dynamic.Resource {
  protected constructor(
    kind: ResourceKind,
    type: string,
    name: string,
    props: { master?: pulumi.Input<MasterSettings> } & Record<string, unknown>,
    opts: pulumi.CustomResourceOptions | undefined,
    secretOutputs: string[] = [],
  ) {
    super(
      delegatingProvider(kind),
      name,
      {
        ...props,
        master: props.master && pulumi.secret(props.master),
        __timeouts: timeoutsOf(opts?.customTimeouts),
      },
      {
        ...opts,
        additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "master", ...secretOutputs],
      },
      "slapos",
      type,
    );
  }
}
