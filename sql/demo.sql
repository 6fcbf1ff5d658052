-- The demo event: merchants Bar and Food, positions Bar (sale) and Top-up, a few products with both VAT rates
-- and a returnable cup; the wristband of the README's quick start with its portal PIN (1234), and the festival's
-- bank account for payout runs (a test IBAN). Idempotent: running it again changes nothing.
-- Run: psql "$URL" -v ON_ERROR_STOP=1 -f sql/demo.sql

DO $$
DECLARE
    e bigint;
    bar bigint;
BEGIN
    IF EXISTS (SELECT FROM ledger.event WHERE name = 'Demo Festival') THEN
        RAISE NOTICE 'demo event exists already';
        RETURN;
    END IF;
    e := api.create_event('Demo Festival', 'EUR', p_max_balance => 50000, p_min_topup => 500, p_max_topup => 25000,
                          p_topup_fee_card => 50, p_payout_fee => 100, p_reserve_timeout_s => 120,
                          p_offline_limit => 5000, p_offline_log_size => 16);
    PERFORM api.set_seller(e, 'Demo Festival GmbH', 'Festivalwiese 1', '12345', 'Musterstadt', '12/345/67890', 'DE123456789');
    bar := api.create_merchant(e, 'Bar');
    PERFORM api.create_merchant(e, 'Food');
    PERFORM api.create_position(e, 'Bar', 'sale', bar);
    PERFORM api.create_position(e, 'Top-up', 'topup');
    PERFORM api.create_product(e, 'Beer 0.5 l', 450, 19);
    PERFORM api.create_product(e, 'Cola 0.3 l', 300, 19);
    PERFORM api.create_product(e, 'Water 0.5 l', 250, 19);
    PERFORM api.create_product(e, 'Pretzel', 350, 7);
    PERFORM api.create_product(e, 'Bratwurst', 550, 7);
    PERFORM api.create_product(e, 'Tip', NULL, 0, p_fixed_price => false);
    PERFORM api.create_product(e, 'Cup deposit', 200, 19, p_returnable => true);  -- a cup takes its drink's rate
    PERFORM api.create_tag(e, '04A1B2C3D4E5F6', '1234');
    UPDATE ledger.event SET payout_debtor_name = 'Demo Festival GmbH', payout_debtor_iban = 'DE02120300000000202051',
                            payout_debtor_bic = 'BYLADEM1001'
     WHERE id = e;
    RAISE NOTICE 'demo event % created', e;
END
$$;
