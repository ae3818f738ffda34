#!/usr/bin/env node
// The command-line entry point; the CLI itself is lib/cli/main.ts (built into dist/).
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv.slice(2));
