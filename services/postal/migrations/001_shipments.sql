-- Results to return by post (bưu chính công ích), and what the carrier says of them.
CREATE TABLE @schema@.shipments (
    id               bigserial PRIMARY KEY,
    code             text NOT NULL UNIQUE,  -- one shipment per dossier result
    delivery_address text NOT NULL,
    recipient        jsonb NOT NULL,
    cod_amount_vnd   bigint NOT NULL DEFAULT 0,
    tracking_number  text,
    state            text NOT NULL DEFAULT 'requested'
        CHECK (state IN ('requested', 'created', 'picked_up', 'in_transit', 'delivered',
                         'failed_attempt', 'returned_to_sender')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
