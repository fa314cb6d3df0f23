// @hey-api/openapi-ts settings for the TypeScript client (e2e/ts/generate.sh sets SPEC and
// SDK_OUT). The fetch client's runtime is copied into the output, so the client needs no
// package at run time: only a global fetch (Node 18+, every browser).
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

/** @type {import('@hey-api/openapi-ts').UserConfig} */
export default {
  input: process.env.SPEC ?? here('../../openapi.yaml'),
  output: {
    path: process.env.SDK_OUT ?? here('../../sdk/typescript'),
    // Imports end in .js, as Node's ES modules (and tsconfig's nodenext) need; bundlers
    // accept them too.
    module: { extension: '.js' },
  },
  plugins: ['@hey-api/typescript', '@hey-api/sdk', '@hey-api/client-fetch'],
};
