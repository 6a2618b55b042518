-- Neovim 0.11+: with this repository on the runtimepath, `vim.lsp.enable('tracefix')` starts
-- tracefix for Python buffers; `vim.lsp.config('tracefix', {...})` overrides any field.
return {
  cmd = { 'tracefix', 'serve' },
  filetypes = { 'python' },
  root_markers = { 'pyproject.toml', 'setup.cfg', '.git' },
  init_options = { trusted = true },
}
