// Package build turns a project folder into a deployment bundle: it reads and
// validates shoal.json, finds the entry module and bundles it, with its
// node_modules dependencies, into one ES module with esbuild. Mistakes in the
// user's project come back as *Error, which names the file and line.
package build
