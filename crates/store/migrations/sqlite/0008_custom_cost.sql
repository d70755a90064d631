-- A caller's own prices (x-portcullis-custom-cost) lower what budgets count only for keys the
-- operator allowed; the log keeps both figures whenever a custom cost was sent: `cost_usd` is
-- what budgets counted, `list_cost_usd` the price at the model's list (or configured) rates
-- and `custom_cost_usd` the price at the caller's rates.
ALTER TABLE virtual_keys ADD COLUMN allow_custom_cost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE request_logs ADD COLUMN list_cost_usd REAL;
ALTER TABLE request_logs ADD COLUMN custom_cost_usd REAL;
