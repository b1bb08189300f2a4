//! SUBSCRIBE (§2.3): only `$dps/registrations/res/#`, always granted at QoS 1 whatever QoS was requested
//! (responses go out at QoS 1, §2.5); any other filter gets `0x80`. The packet identifier is echoed.
//! UNSUBSCRIBE of the response filter ends the subscription (Node unsubscribes before it disconnects).

use dps_proto::mqtt::RESPONSE_FILTER;
use rumqttc::mqttbytes::v4::{SubAck, Subscribe, SubscribeReasonCode, UnsubAck, Unsubscribe};
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
                SubscribeReasonCode::Success(QoS::AtLeastOnce)
            } else {
                SubscribeReasonCode::Failure
            }
        })
        .collect();
    (SubAck::new(s.pkid, codes), subscribed)
}

/// The UNSUBACK, and whether the response filter is no longer subscribed.
pub fn unsubscribe(u: &Unsubscribe) -> (UnsubAck, bool) {
    (UnsubAck::new(u.pkid), u.topics.iter().any(|t| t == RESPONSE_FILTER))
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

    /// Issue 13 fix 6: QoS 0 requested, QoS 1 granted.
    #[test]
    fn qos_1_is_granted_whatever_was_requested() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let (ack, ok) = answer(&Subscribe::new(RESPONSE_FILTER, qos));
            assert!(ok);
            assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)], "{qos:?}");
        }
        let (ack, ok) = answer(&Subscribe::new("$dps/registrations/res/200", QoS::AtMostOnce));
        assert!(!ok);
        assert_eq!(ack.return_codes, vec![SubscribeReasonCode::Failure]);
    }

    #[test]
    fn unsubscribing_the_response_filter_ends_the_subscription() {
        let mut u = Unsubscribe::new("devices/#");
        u.pkid = 3;
        assert_eq!(unsubscribe(&u), (UnsubAck::new(3), false));
        u.topics.push(RESPONSE_FILTER.into());
        assert_eq!(unsubscribe(&u), (UnsubAck::new(3), true));
    }
}
