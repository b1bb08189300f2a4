//! SUBSCRIBE (§2.3): only `$dps/registrations/res/#`, granted at QoS 1 (QoS 2 requests get 1); any other
//! filter gets `0x80`. The packet identifier is echoed.

use dps_proto::mqtt::RESPONSE_FILTER;
use rumqttc::mqttbytes::v4::{SubAck, Subscribe, SubscribeReasonCode};
use rumqttc::mqttbytes::QoS;

/// The SUBACK, and whether the response filter is now subscribed.
pub fn answer(s: &Subscribe) -> (SubAck, bool) {
    let mut subscribed = false;
    let codes = s
        .filters
        .iter()
        .map(|f| {
            if f.path == RESPONSE_FILTER {
                subscribed = true;
                SubscribeReasonCode::Success(if f.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce })
            } else {
                SubscribeReasonCode::Failure
            }
        })
        .collect();
    (SubAck::new(s.pkid, codes), subscribed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::SubscribeFilter;

    #[test]
    fn only_the_dps_filter_is_granted() {
        let mut s = Subscribe::new(RESPONSE_FILTER, QoS::ExactlyOnce);
        s.pkid = 7;
        s.filters.push(SubscribeFilter::new("devices/#".into(), QoS::AtLeastOnce));
        let (ack, ok) = answer(&s);
        assert!(ok);
        assert_eq!(ack.pkid, 7);
        assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce), SubscribeReasonCode::Failure]);
    }
}
