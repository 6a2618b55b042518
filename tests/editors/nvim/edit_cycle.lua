-- Break a function in the buffer, save, see tracefix's failures, rerun a test through a code
-- action, fix the function, save, see the failures clear. Run after the configuration under test.
local h = dofile(vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':h') .. '/harness.lua')

h.run(function(outcome)
  vim.cmd('filetype on')
  local code = h.open('shop/pricing.py')
  local tests = h.closed('tests/test_pricing.py')
  local client = h.client(code)
  local results = h.record(client, 'tracefix/testResults')
  h.wait('tracefix to be ready', function() return vim.g.tracefix_status ~= nil end)

  h.replace(code, 'price * (1 - percent / 100)', 'price * (1 + percent / 100)')
  vim.cmd('write')
  h.wait('failures in both files', function() return #h.errors(tests) > 0 and #h.errors(code) > 0 end)
  h.wait('a failed status', function() return vim.g.tracefix_status.state == 'failed' end)
  outcome.failing = { tests = h.errors(tests), code = h.errors(code) }
  outcome.statusline = vim.api.nvim_eval_statusline(vim.o.statusline, {}).str

  local hover = vim.lsp.buf_request_sync(code, 'textDocument/hover', {
    textDocument = { uri = vim.uri_from_bufnr(tests) },
    position = { line = 4, character = 4 }, -- in test_apply_discount
  }, 10000)
  outcome.hover = hover[client.id].result.contents.value

  -- The code action menu goes through vim.ui.select; answer it as a user would.
  vim.api.nvim_win_set_cursor(0, { outcome.failing.code[1].line + 1, 0 })
  vim.ui.select = function(items, _, on_choice)
    outcome.actions = {}
    local choice
    for _, item in ipairs(items) do
      local action = item.action or item[2] -- {action=, ctx=} from 0.10, {client_id, action} before
      table.insert(outcome.actions, action.title)
      if not choice and action.title:find('^Rerun ') then
        choice, outcome.chosen = item, action.title
      end
    end
    on_choice(choice)
  end
  for i in pairs(results) do
    results[i] = nil
  end
  vim.lsp.buf.code_action()
  h.wait('the rerun', function() return h.finished(results) end)
  outcome.rerun = h.finished(results)

  h.replace(code, 'price * (1 + percent / 100)', 'price * (1 - percent / 100)')
  vim.cmd('write')
  h.wait('the failures to clear', function() return #h.errors(tests) == 0 and #h.errors(code) == 0 end)
  h.wait('an idle status', function() return vim.g.tracefix_status.state == 'idle' end)
  outcome.cleared_statusline = vim.api.nvim_eval_statusline(vim.o.statusline, {}).str
end)
