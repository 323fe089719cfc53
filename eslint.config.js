import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'client/dist/**', 'node_modules/**', 'bench/results/**'] }),
  // The README's browser snippets (public/examples/) use EventSource, which neostandard's browser globals lack.
  { files: ['public/**/*.js'], languageOptions: { globals: { EventSource: 'readonly' } } }
]
