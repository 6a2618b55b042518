-- Shared by the scenarios: named waits, a record of a client's notifications, and the outcome
-- handed to test_neovim.py as JSON (with Neovim's messages, which pytest prints on failure).
local M = {}

M.shop = vim.env.TRACEFIX_SHOP

function M.wait(what, condition, timeout)
  if not vim.wait(timeout or 40000, condition, 50) then
    error('timed out waiting for ' .. what, 2)
  end
end

--- The tracefix client attached to buf, once it has initialized (Neovim lists it from then).
function M.client(buf)
  local found
  M.wait('tracefix to attach to ' .. vim.api.nvim_buf_get_name(buf), function()
    local attached = vim.lsp.get_clients and vim.lsp.get_clients({ bufnr = buf }) or vim.lsp.buf_get_clients(buf)
    for _, client in pairs(attached) do
      if client.name == 'tracefix' then
        found = client
      end
    end
    return found
  end)
  return found
end

--- Opens a file of the example project; returns its buffer.
function M.open(rel)
  vim.cmd('edit ' .. vim.fn.fnameescape(M.shop .. '/' .. rel))
  return vim.api.nvim_get_current_buf()
end

--- The buffer Neovim keeps a closed file's diagnostics in.
function M.closed(rel)
  return vim.uri_to_bufnr(vim.uri_from_fname(M.shop .. '/' .. rel))
end

--- A list that fills with the params of each `method` notification, ahead of its handler.
function M.record(client, method)
  local seen = {}
  local handler = client.handlers[method] or vim.lsp.handlers[method]
  client.handlers[method] = function(err, result, ctx, config)
    table.insert(seen, result)
    if handler then
      return handler(err, result, ctx, config)
    end
  end
  return seen
end

--- The results of the first finished run in a tracefix/testResults record, nil before it ends.
function M.finished(notifications)
  local results = {}
  for _, notification in ipairs(notifications) do
    vim.list_extend(results, notification.results)
    if notification.done then
      return results
    end
  end
end

--- The diagnostics from `source` on a buffer, as {line (0-based), message, severity}.
function M.diagnostics(buf, source)
  local found = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    if d.source == source then
      table.insert(found, { line = d.lnum, message = d.message, severity = d.severity })
    end
  end
  return found
end

--- Whether buf has tracefix diagnostics and all are on `line` (0-based): the failing tests are
--- traced after the run, and the blame can move to the line the trace finds.
function M.blamed_on(buf, line)
  local found = M.diagnostics(buf, 'tracefix')
  for _, d in ipairs(found) do
    if d.line ~= line then
      return false
    end
  end
  return #found > 0
end

--- Opens the code action menu at the cursor and picks the first action whose title matches
--- `pattern`, as a user would; returns the titles offered.
function M.code_action(pattern)
  local offered, choice
  vim.ui.select = function(items, _, on_choice)
    offered = {}
    for _, item in ipairs(items) do
      local title = (item.action or item[2]).title -- {action=, ctx=} from 0.10, {client_id, action} before
      table.insert(offered, title)
      if not choice and title:find(pattern) then
        choice = item
      end
    end
    on_choice(choice)
  end
  vim.lsp.buf.code_action()
  M.wait('the code actions', function() return offered end)
  if not choice then
    error(('no code action matches %q among: %s'):format(pattern, table.concat(offered, '; ')), 2)
  end
  return offered
end

--- Types `new` over the first `old` in the buffer.
function M.replace(buf, old, new)
  for i, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, true)) do
    local at = line:find(old, 1, true)
    if at then
      vim.api.nvim_buf_set_lines(buf, i - 1, i, true, { line:sub(1, at - 1) .. new .. line:sub(at + #old) })
      return
    end
  end
  error(old .. ' is not in the buffer', 2)
end

--- Runs the scenario with an outcome table to fill, writes that (and any error) for pytest, quits.
function M.run(scenario)
  local outcome = {}
  local ok, err = xpcall(scenario, debug.traceback, outcome)
  outcome.error = not ok and err or nil
  outcome.messages = vim.fn.execute('messages')
  local file = assert(io.open(vim.env.TRACEFIX_OUTCOME, 'w'))
  file:write(vim.fn.json_encode(outcome))
  file:close()
  vim.cmd(ok and 'qall!' or 'cquit!')
end

return M
