-- Fee orders (at most one open order per dossier), every IPN the gateway sent, refunds.
CREATE TABLE @schema@.orders (
    id               text PRIMARY KEY,            -- also vnp_TxnRef
    code             text NOT NULL,               -- the dossier
    amount_vnd       bigint NOT NULL CHECK (amount_vnd > 0),
    procedure_code   text NOT NULL DEFAULT '',
    procedure_name   text NOT NULL DEFAULT '',
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'paid', 'failed', 'expired', 'refunded')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    paid_at          timestamptz,
    closed_at        timestamptz,
    bank_transaction text,                        -- vnp_TransactionNo
    bank_code        text,                        -- vnp_BankCode
    pay_date         text,                        -- vnp_PayDate as the gateway wrote it
    response_code    text,                        -- vnp_ResponseCode of the deciding IPN
    reason           text,                        -- why it failed, expired or was refunded
    message_id       uuid                         -- the PaymentRequested that made it
);
CREATE UNIQUE INDEX orders_open ON @schema@.orders (code) WHERE state = 'pending';
CREATE INDEX orders_code ON @schema@.orders (code, created_at);
CREATE INDEX orders_expiry ON @schema@.orders (expires_at) WHERE state = 'pending';

-- Every IPN received, whatever the verdict: the canonical query (the signed vnp_*
-- parameters and the hash as received), the answer given and when.
CREATE TABLE @schema@.ipn_log (
    id          bigserial PRIMARY KEY,
    order_id    text,
    query       text NOT NULL,
    verdict     text NOT NULL,   -- RspCode answered: 00 01 02 04 97 99
    message     text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ipn_log_order ON @schema@.ipn_log (order_id, id);

-- Refunds owed to applicants. `recorded`: decided here; the gateway's refund API is
-- not called yet (docs/payment.md).
CREATE TABLE @schema@.refunds (
    id         bigserial PRIMARY KEY,
    order_id   text NOT NULL UNIQUE REFERENCES @schema@.orders (id),
    code       text NOT NULL,
    amount_vnd bigint NOT NULL,
    reason     text NOT NULL,
    state      text NOT NULL DEFAULT 'recorded',
    created_at timestamptz NOT NULL DEFAULT now()
);
