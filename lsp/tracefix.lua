-- Neovim 0.11+: with this repository on the runtimepath, `vim.lsp.enable('tracefix')` starts
-- tracefix for Python buffers; `vim.lsp.config('tracefix', {...})` overrides any field.
return {
  cmd = { 'tracefix', 'serve' },
  filetypes = { 'python' },
  root_markers = { 'pyproject.toml', 'setup.cfg', '.git' },
  init_options = { trusted = true },
  -- 0.11 shows diagnostics as signs only: tracefix's say why a test failed, on its line
  on_attach = function(client)
    vim.diagnostic.config({ virtual_text = true }, vim.lsp.diagnostic.get_namespace(client.id))
  end,
}
