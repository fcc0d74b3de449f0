#!/usr/bin/env node
// The `dormouse` command (package.json "bin"): the CLI is TypeScript run from source, so this
// launcher registers tsx's loader and then imports it. `npx dormouse --help` after `npm install`.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
