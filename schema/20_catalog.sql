-- Merchants, positions (till places) and products of an event.

SET ROLE festpay_owner;

CREATE TABLE ledger.merchant (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint NOT NULL REFERENCES ledger.event,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    account_id bigint NOT NULL UNIQUE REFERENCES ledger.account,
    CONSTRAINT merchant_name_unique UNIQUE (event_id, name)
);
COMMENT ON TABLE ledger.merchant IS 'A vendor; its sales are booked on its merchant account.';

CREATE TABLE ledger.position (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    bigint NOT NULL REFERENCES ledger.event,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind        ledger.position_kind NOT NULL,
    merchant_id bigint REFERENCES ledger.merchant,
    CONSTRAINT position_name_unique UNIQUE (event_id, name),
    CONSTRAINT sale_positions_have_a_merchant CHECK (kind <> 'sale' OR merchant_id IS NOT NULL)
);
COMMENT ON TABLE ledger.position IS 'A till place: sale (for one merchant) or top-up.';

CREATE TABLE ledger.product (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    bigint NOT NULL REFERENCES ledger.event,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    price       bigint CHECK (price >= 0),
    vat_rate    numeric(5,2) NOT NULL CHECK (vat_rate >= 0 AND vat_rate < 100),
    fixed_price boolean NOT NULL DEFAULT true,
    returnable  boolean NOT NULL DEFAULT false,
    CONSTRAINT product_name_unique UNIQUE (event_id, name),
    CONSTRAINT fixed_price_has_a_price CHECK (NOT fixed_price OR price IS NOT NULL),
    CONSTRAINT returnable_has_fixed_price CHECK (NOT returnable OR fixed_price)
);
COMMENT ON TABLE ledger.product IS 'A product: price in cents (NULL when variable), VAT rate in percent, returnable = a deposit item (Pfand).';

RESET ROLE;
