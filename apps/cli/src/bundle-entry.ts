// Entry of the CLI's one-file bundle (dist/apps/cli/stratum.js, made by infra/bundle-cli.js),
// which the `stratum` launcher runs: inside a bundle `require.main === module` never holds.
import { main } from './main';

void main();
